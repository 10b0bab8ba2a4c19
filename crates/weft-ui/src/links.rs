//! URLs the pages link to, built in one place so every name that goes into a path is percent-encoded the same way
//! (service, node and KV key names may hold spaces, `?`, `#`, `%` or non-ASCII characters).

/// A labelled link: breadcrumbs, page actions, "back" links.
#[derive(Debug, Clone)]
pub struct Link {
    pub label: String,
    pub href: String,
}

pub use weft_types::url::{path, query_value, segment};

/// `/ui/{dc}/{rest}`; `rest` is already encoded.
pub fn dc_path(dc: &str, rest: &str) -> String {
    format!("/ui/{}/{rest}", segment(dc))
}

/// A service's page; an empty `tab` is its default tab.
pub fn service(dc: &str, name: &str, tab: &str) -> String {
    with_tab(dc_path(dc, &format!("services/{}", segment(name))), tab)
}

/// A node's page; an empty `tab` is its default tab.
pub fn node(dc: &str, name: &str, tab: &str) -> String {
    with_tab(dc_path(dc, &format!("nodes/{}", segment(name))), tab)
}

fn with_tab(base: String, tab: &str) -> String {
    if tab.is_empty() {
        base
    } else {
        format!("{base}/{tab}")
    }
}

/// An intention's edit page, addressed by its pair as Consul's UI does
/// (`default:default:<source>:default:default:<destination>`): intentions written through the exact endpoint or
/// config entries have no ID.
pub fn intention_edit(dc: &str, source: &str, destination: &str) -> String {
    dc_path(
        dc,
        &format!(
            "intentions/{}",
            segment(&format!(
                "default:default:{source}:default:default:{destination}"
            ))
        ),
    )
}

/// The pair an edit URL names: Consul's six-part form or `source:destination`; `None` for a plain ID.
pub fn intention_pair(id: &str) -> Option<(&str, &str)> {
    let parts: Vec<&str> = id.split(':').collect();
    match parts.as_slice() {
        [_, _, source, _, _, destination] => Some((source, destination)),
        [source, destination] => Some((source, destination)),
        _ => None,
    }
}

/// The API URL of one intention, by its pair.
pub fn intention_api(source: &str, destination: &str) -> String {
    format!(
        "/v1/connect/intentions/exact?source={}&destination={}",
        query_value(source),
        query_value(destination)
    )
}

pub fn intention_create(dc: &str, source: &str, destination: &str) -> String {
    let mut q = Vec::new();
    if !source.is_empty() {
        q.push(format!("source={}", query_value(source)));
    }
    if !destination.is_empty() {
        q.push(format!("destination={}", query_value(destination)));
    }
    let base = dc_path(dc, "intentions/create");
    if q.is_empty() {
        base
    } else {
        format!("{base}?{}", q.join("&"))
    }
}

/// The dashboard page of a KV key or folder (a folder ends in `/`).
pub fn kv(dc: &str, key: &str) -> String {
    dc_path(dc, &format!("kv/{}", path(key)))
}

/// The API URL of a KV key, for the script's writes.
pub fn kv_api(key: &str) -> String {
    format!("/v1/kv/{}", path(key))
}

/// Whether a key can be addressed in a URL path at all: browsers resolve `.` and `..` segments (even encoded ones)
/// before sending, so such keys are shown but not linked.
pub fn kv_addressable(key: &str) -> bool {
    !key.split('/').any(|s| s == "." || s == "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_paths_are_encoded() {
        assert_eq!(segment("a b?#%/é"), "a%20b%3F%23%25%2F%C3%A9");
        assert_eq!(path("a b/c?/"), "a%20b/c%3F/");
        assert_eq!(kv("dc1", "x/y z"), "/ui/dc1/kv/x/y%20z");
        assert_eq!(
            intention_create("dc1", "web", "*"),
            "/ui/dc1/intentions/create?source=web&destination=%2A"
        );
        assert_eq!(
            intention_edit("dc1", "*", "db"),
            "/ui/dc1/intentions/default%3Adefault%3A%2A%3Adefault%3Adefault%3Adb"
        );
        assert_eq!(
            intention_pair("default:default:*:default:default:db"),
            Some(("*", "db"))
        );
        assert_eq!(intention_pair("web:db"), Some(("web", "db")));
        assert_eq!(intention_pair("0b3d3d2f-7a6c"), None);
        assert!(!kv_addressable("a/../b"));
        assert!(kv_addressable("a/.b"));
    }
}
