//! A real headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`), for the tests of the pages people use.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// A browser session; the driver and every browser process it started are killed on drop.
pub struct Browser {
    pub client: Client,
    driver: Child,
    /// A fresh profile per browser.
    _profile: tempfile::TempDir,
}

fn find_binary(env: &str, candidates: &[&str]) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return PathBuf::from(path);
    }
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "no {} found (set {env}); install Debian's chromium and chromium-driver \
                 (`.ci/run` does)",
                candidates[0]
            )
        })
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a window of `width` × `height`.
    pub async fn start(width: u32, height: u32) -> Self {
        let driver_bin = find_binary(
            "FORECAST_CHROMEDRIVER",
            &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
        );
        let chromium = find_binary("FORECAST_CHROMIUM", &["/usr/bin/chromium"]);
        let port = crate::free_port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: dropping the browser kills Chromium's processes too.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", driver_bin.display()));
        let url = format!("http://127.0.0.1:{port}");
        let profile = tempfile::tempdir().expect("profile directory");
        crate::cluster::wait_until("chromedriver answers", Duration::from_secs(60), || async {
            crate::http()
                .get(format!("{url}/status"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={width},{height}"),
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("no WebDriver session: {e}"));
        client
            .set_window_size(width, height)
            .await
            .expect("window size");
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Opens `url` and waits until its document is loaded.
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("goto");
    }

    /// The element `css` selects, waiting up to 30 s for it to appear.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    /// Every element `css` selects now.
    pub async fn all(&self, css: &str) -> Vec<fantoccini::elements::Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("finding {css}: {e}"))
    }

    /// The text of the element `css` selects, waiting up to 30 s for it to appear. Read in
    /// one script, so a page that updates itself cannot swap the element out midway.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await;
        self.texts(css).await.into_iter().next().unwrap_or_default()
    }

    /// The text of every element `css` selects now (read in one script).
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let value = self
            .client
            .execute(
                "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText.trim());",
                vec![json!(css)],
            )
            .await
            .expect("script");
        serde_json::from_value(value).unwrap_or_default()
    }

    /// The attribute `name` of the element `css` selects.
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.find(css).await.attr(name).await.expect("attribute")
    }

    /// Replaces the value of the form field `css` with `text`, as a person would by
    /// selecting what is there and typing. (Long text is set through the DOM: typing
    /// thousands of characters one by one takes minutes in a driven browser.)
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("clear");
        if text.len() <= 200 {
            field.send_keys(text).await.expect("type");
        } else {
            self.client
                .execute(
                    "arguments[0].value = arguments[1];",
                    vec![serde_json::to_value(&field).expect("element"), json!(text)],
                )
                .await
                .expect("set value");
        }
    }

    /// Clicks the element `css` selects (a form's submit button) and waits for the page it
    /// leads to (a new document: the old one is marked first), then for the element `then`
    /// selects on it.
    pub async fn click_then(&self, css: &str, then: &str) -> fantoccini::elements::Element {
        self.eval("document.documentElement.dataset.before = 'yes'; return true;")
            .await;
        self.find(css).await.click().await.expect("click");
        self.find("html:not([data-before])").await;
        self.find(then).await
    }

    /// Saves what the window shows as `target/screenshots/<name>.png` (every page test
    /// leaves its pictures there; the README's are copies).
    pub async fn screenshot(&self, name: &str) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
        std::fs::create_dir_all(&dir).expect("target/screenshots");
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write the screenshot");
    }

    /// Runs `script` in the page and answers its value.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .expect("script")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = self.driver.id() as i32;
        // SAFETY: kill(2) on our own child's process group.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}
