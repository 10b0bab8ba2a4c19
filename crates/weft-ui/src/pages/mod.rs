//! One module per screen: its template structs, its [`crate::live::Screen`] and its axum handlers. The shapes
//! shared by several screens (list and detail pages, tabs, filter options) live here.

pub mod acls;
pub mod errors;
pub mod intentions;
pub mod kv;
pub mod login;
pub mod nodes;
pub mod root;
pub mod service;
pub mod services;

use crate::cx::Chrome;
pub use crate::links::Link;
use crate::live::Region;
use askama::Template;

/// A tab of a detail page.
pub struct Tab {
    pub label: &'static str,
    pub href: String,
    pub current: bool,
}

/// An option of a filter `<select>`.
pub struct Opt {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

pub fn options(all: &[(&'static str, &'static str)], selected: &str) -> Vec<Opt> {
    all.iter()
        .map(|(value, label)| Opt {
            value,
            label,
            selected: *value == selected,
        })
        .collect()
}

pub const HEALTH_FILTER: [(&str, &str); 5] = [
    ("", "Any health"),
    ("passing", "Passing"),
    ("warning", "Warning"),
    ("critical", "Critical"),
    ("empty", "No checks"),
];

/// A searchable, filterable list (services, nodes, intentions).
#[derive(Template)]
#[template(path = "list.html")]
pub struct ListPage<'a> {
    pub chrome: Chrome,
    pub region: &'a Region,
    pub heading: &'static str,
    pub q: &'a str,
    pub placeholder: &'static str,
    pub select_name: &'static str,
    pub select_label: &'static str,
    pub options: Vec<Opt>,
    pub action: Option<Link>,
}

/// A page about one thing (a service, a node) with tabs.
#[derive(Template)]
#[template(path = "detail.html")]
pub struct DetailPage<'a> {
    pub chrome: Chrome,
    pub region: &'a Region,
    pub crumbs: Vec<Link>,
    pub heading: String,
    pub tabs: Vec<Tab>,
    pub tabs_label: &'static str,
    pub action: Option<Link>,
}

/// `?q=&status=` (or `&action=`): the filter a list page opens with.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Filter {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub action: String,
}
