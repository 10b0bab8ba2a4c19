//! The KV browser's views: a folder (the keys and sub-folders one level under a prefix, split at `/`) and a key.

use crate::links::{self, Link};
use base64::Engine;
use weft_state::Store;

/// `Key/Value / a/ / b/` for `a/b/c` or `a/b/`.
pub fn crumbs(dc: &str, key: &str) -> Vec<Link> {
    let mut out = vec![Link {
        label: "Key/Value".into(),
        href: links::kv(dc, ""),
    }];
    let mut prefix = String::new();
    let parts: Vec<&str> = key.split('/').collect();
    // Every segment but the last names a folder above the key.
    for part in &parts[..parts.len().saturating_sub(1)] {
        prefix.push_str(part);
        prefix.push('/');
        out.push(Link {
            label: format!("{part}/"),
            href: links::kv(dc, &prefix),
        });
    }
    out
}

#[derive(Debug, Clone)]
pub struct KvRow {
    /// The name under the folder (`b/` for a sub-folder, `c` for a key).
    pub name: String,
    pub key: String,
    /// The dashboard page; `None` for keys with `.`/`..` segments, which no URL can address.
    pub href: Option<String>,
    pub folder: bool,
    /// Value size in bytes (keys only).
    pub size: usize,
    pub preview: String,
    /// The API URL the delete button calls (with `?recurse` for folders).
    pub delete_url: String,
    pub search: String,
    /// Why the viewer may not delete it (the permission its token lacks); the button is disabled then.
    pub locked: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Folder {
    pub prefix: String,
    pub rows: Vec<KvRow>,
}

const PREVIEW: usize = 80;

fn preview(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(text) => {
            let line: String = text
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(PREVIEW)
                .collect();
            if text.chars().count() > PREVIEW {
                format!("{line}…")
            } else {
                line
            }
        }
        Err(_) => format!("binary, {} bytes", value.len()),
    }
}

pub fn folder(dc: &str, store: &Store, prefix: &str) -> Folder {
    let rows = store
        .kv_keys(prefix, "/")
        .into_iter()
        .filter(|k| k != prefix)
        .map(|key| {
            let name = key[prefix.len()..].to_string();
            let folder = key.ends_with('/');
            let value = store
                .kv_get(&key)
                .map(|e| e.value.as_slice())
                .unwrap_or(&[]);
            KvRow {
                locked: None,
                search: name.to_lowercase(),
                href: links::kv_addressable(&key).then(|| links::kv(dc, &key)),
                size: value.len(),
                preview: if folder {
                    String::new()
                } else {
                    preview(value)
                },
                delete_url: if folder {
                    format!("{}?recurse", links::kv_api(&key))
                } else {
                    links::kv_api(&key)
                },
                name,
                key,
                folder,
            }
        })
        .collect();
    Folder {
        prefix: prefix.to_string(),
        rows,
    }
}

/// One stored entry.
#[derive(Debug, Clone)]
pub struct EntryView {
    /// The value as text, when it is UTF-8.
    pub text: Option<String>,
    /// Base64 of a binary value.
    pub base64: String,
    pub size: usize,
    pub flags: u64,
    pub session: String,
    pub create_index: u64,
    pub modify_index: u64,
    pub lock_index: u64,
}

pub fn entry(store: &Store, key: &str) -> Option<EntryView> {
    store.kv_get(key).map(|e| {
        let text = std::str::from_utf8(&e.value).ok().map(str::to_string);
        EntryView {
            base64: if text.is_some() {
                String::new()
            } else {
                base64::engine::general_purpose::STANDARD.encode(&e.value)
            },
            text,
            size: e.value.len(),
            flags: e.flags,
            session: e.session.clone(),
            create_index: e.create_index,
            modify_index: e.modify_index,
            lock_index: e.lock_index,
        }
    })
}

/// Whether anything is stored under `prefix` (so a key URL without a value is really a folder).
pub fn has_children(store: &Store, prefix: &str) -> bool {
    store.kv_list(prefix).next().is_some()
}
