//! What every page shares: the [`Chrome`] around it (navigation, user,
//! language, CSRF token) and [`html`], which renders a template into a
//! response.

use askama::Template;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use panorama_model::Layer;

use crate::auth::Session;
use crate::config::{Lang, Role};
use crate::i18n::{Texts, texts};
use crate::{Dashboard, format};

/// What every page's layout needs: words, who is logged in, the form
/// token, the navigation.
pub(crate) struct Chrome {
    pub(crate) t: &'static Texts,
    pub(crate) lang: &'static str,
    /// Link that switches to the other language and comes back here.
    pub(crate) lang_href: String,
    pub(crate) user: String,
    pub(crate) operator: bool,
    pub(crate) csrf: String,
    /// Which navigation entry is current.
    pub(crate) nav: &'static str,
    pub(crate) now: String,
    pub(crate) tz: String,
    pub(crate) layers: Vec<(&'static str, &'static str)>,
}

impl Chrome {
    pub(crate) fn new(
        d: &Dashboard,
        headers: &HeaderMap,
        s: &Session,
        path: &str,
        nav: &'static str,
    ) -> Chrome {
        let lang = crate::auth::lang(d, headers);
        let mut c = Chrome::anonymous(d, lang, path);
        c.user = s.user.clone();
        c.operator = s.role >= Role::Operator;
        c.csrf = s.csrf.clone();
        c.nav = nav;
        c
    }

    pub(crate) fn anonymous(d: &Dashboard, lang: Lang, path: &str) -> Chrome {
        let t = texts(lang);
        let other = if lang == Lang::Zh { "en" } else { "zh" };
        let tz = d.cfg().time_zone;
        Chrome {
            t,
            lang: lang.code(),
            lang_href: format!("/lang/{other}?next={}", format::encode(path)),
            user: String::new(),
            operator: false,
            csrf: String::new(),
            nav: "",
            now: format::minute(tz, now_ms()),
            tz: tz.name().to_owned(),
            layers: Layer::ALL
                .iter()
                .map(|l| (l.as_str(), t.layer(*l)))
                .collect(),
        }
    }
}

/// The request's path and query, for the language switch to come back to.
pub(crate) fn here(req_uri: &axum::http::Uri) -> String {
    req_uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned())
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Renders a template as an HTML response; a template error is a 500 that
/// names nothing internal.
pub(crate) fn html<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(body) => (
            [(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "dashboard template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render",
            )
                .into_response()
        }
    }
}
