//! The page shell: one stylesheet served beside the page (inline styles would need
//! `'unsafe-inline'`), a viewport for phones, a header and a main column.

use maud::{DOCTYPE, Markup, html};

/// The stylesheet every page links.
pub const STYLESHEET: &str = include_str!("style.css");

/// A complete page: `title`, the stylesheet at `stylesheet_href`, and `body`.
pub fn page(title: &str, stylesheet_href: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                link rel="stylesheet" href=(stylesheet_href);
            }
            body {
                main { (body) }
            }
        }
    }
}

/// An error box: the API's error code and its message, as the API answered them.
pub fn error_box(code: &str, message: &str) -> Markup {
    html! {
        div.error role="alert" {
            strong { "Error " code { (code) } } ": " span.message { (message) }
        }
    }
}

/// A definition list of label → value pairs (a card's body).
pub fn facts<'a>(rows: impl IntoIterator<Item = (&'a str, Markup)>) -> Markup {
    html! {
        dl.facts {
            @for (label, value) in rows {
                dt { (label) }
                dd { (value) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_links_its_stylesheet_and_escapes_what_it_shows() {
        let html = page(
            "<model>",
            "/ui/style.css",
            error_box("invalid_input", "<b>x</b>"),
        )
        .into_string();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains(r#"<link rel="stylesheet" href="/ui/style.css">"#));
        assert!(html.contains("<title>&lt;model&gt;</title>"));
        assert!(html.contains("&lt;b&gt;x&lt;/b&gt;"));
        assert!(!html.contains("<script") && !html.contains("style=\""));
    }
}
