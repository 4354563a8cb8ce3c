//! The cluster's certificates and keys, made with the openssl command line: a CA, the API
//! server's serving certificate, a client certificate per identity (the admin in
//! `system:masters`, the controller manager, the scheduler, the node in `system:nodes`),
//! the service-account signing key pair, and a kubeconfig per identity.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::run;

/// A client identity: file stem, common name (the user), organisation (the group).
pub struct Identity {
    pub stem: &'static str,
    pub user: String,
    pub group: Option<&'static str>,
}

pub struct Pki {
    pub dir: PathBuf,
}

fn openssl(dir: &Path) -> Command {
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd
}

impl Pki {
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Creates everything (the directory is new for every cluster).
    pub fn create(dir: &Path, identities: &[Identity], server_ips: &[&str]) -> anyhow::Result<Pki> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        run(openssl(dir).args([
            "req",
            "-x509",
            "-new",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "3650",
            "-subj",
            "/CN=forecast-test-ca",
        ]))
        .context("openssl is needed to make the cluster's certificates")?;
        let mut sans: Vec<String> = server_ips.iter().map(|ip| format!("IP:{ip}")).collect();
        sans.extend(
            [
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ]
            .iter()
            .map(|d| format!("DNS:{d}")),
        );
        sign(
            dir,
            "apiserver",
            "/CN=kube-apiserver",
            Some(&sans.join(",")),
            "serverAuth",
        )?;
        for id in identities {
            let subject = match id.group {
                Some(group) => format!("/O={group}/CN={}", id.user),
                None => format!("/CN={}", id.user),
            };
            sign(dir, id.stem, &subject, None, "clientAuth")?;
        }
        run(openssl(dir).args(["genrsa", "-out", "sa.key", "2048"]))?;
        run(openssl(dir).args(["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"]))?;
        Ok(Pki {
            dir: dir.to_path_buf(),
        })
    }

    /// A kubeconfig for `stem`'s client certificate.
    pub fn kubeconfig(&self, stem: &str, server: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(format!("{stem}.kubeconfig"));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: forecast-test\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
             users:\n- name: {stem}\n  user:\n    client-certificate: {crt}\n    client-key: {key}\n\
             contexts:\n- name: {stem}@forecast-test\n  context:\n    cluster: forecast-test\n    user: {stem}\n    namespace: default\n\
             current-context: {stem}@forecast-test\npreferences: {{}}\n",
            ca = self.file("ca.crt").display(),
            crt = self.file(&format!("{stem}.crt")).display(),
            key = self.file(&format!("{stem}.key")).display(),
        );
        std::fs::write(&path, text)?;
        Ok(path)
    }
}

fn sign(
    dir: &Path,
    stem: &str,
    subject: &str,
    sans: Option<&str>,
    usage: &str,
) -> anyhow::Result<()> {
    let key = format!("{stem}.key");
    let csr = format!("{stem}.csr");
    run(openssl(dir).args([
        "req", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout", &key, "-out", &csr, "-subj",
        subject,
    ]))?;
    let ext = dir.join(format!("{stem}.ext"));
    let mut text = format!(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage={usage}\n"
    );
    if let Some(sans) = sans {
        text.push_str(&format!("subjectAltName={sans}\n"));
    }
    std::fs::write(&ext, text)?;
    run(openssl(dir)
        .args([
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{stem}.crt"),
            "-days",
            "365",
            "-extfile",
        ])
        .arg(&ext))?;
    Ok(())
}
