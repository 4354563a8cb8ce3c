// The etcd server binary, built from go.etcd.io/etcd/server/v3 (the wrapper the release's
// own root module main.go is: etcd publishes no main package in the server module).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
