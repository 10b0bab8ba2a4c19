//! Intention rows, in evaluation order (highest precedence first), as the intentions pages list them.

use crate::links;
use weft_state::Store;
use weft_types::intention::WILDCARD;
use weft_types::Intention;

#[derive(Debug, Clone)]
pub struct IntentionRow {
    pub source: String,
    pub destination: String,
    /// `allow`, `deny` or `app-aware` (L7 permissions), for the filter and the badge colour.
    pub action: &'static str,
    pub action_label: String,
    pub precedence: i32,
    pub description: String,
    pub source_href: Option<String>,
    pub destination_href: Option<String>,
    pub edit_href: String,
    /// The exact endpoint for this pair (the delete button's target).
    pub api_url: String,
    pub search: String,
}

impl IntentionRow {
    pub fn name_label(name: &str) -> String {
        if name == WILDCARD {
            "All services (*)".into()
        } else {
            name.to_string()
        }
    }

    pub fn source_label(&self) -> String {
        IntentionRow::name_label(&self.source)
    }

    pub fn destination_label(&self) -> String {
        IntentionRow::name_label(&self.destination)
    }
}

pub fn row(dc: &str, i: &Intention) -> IntentionRow {
    let (action, action_label) = if !i.permissions.is_empty() {
        (
            "app-aware",
            format!("App aware ({} permissions)", i.permissions.len()),
        )
    } else if i.action == "allow" {
        ("allow", "Allow".to_string())
    } else {
        ("deny", "Deny".to_string())
    };
    IntentionRow {
        source: i.source_name.clone(),
        destination: i.destination_name.clone(),
        action,
        action_label,
        precedence: i.precedence,
        description: i.description.clone(),
        source_href: (i.source_name != WILDCARD).then(|| links::service(dc, &i.source_name, "")),
        destination_href: (i.destination_name != WILDCARD)
            .then(|| links::service(dc, &i.destination_name, "")),
        edit_href: links::intention_edit(dc, &i.source_name, &i.destination_name),
        api_url: links::intention_api(&i.source_name, &i.destination_name),
        search: format!("{} {} {}", i.source_name, i.destination_name, i.description)
            .to_lowercase(),
    }
}

/// Every intention `keep` accepts, highest precedence first.
pub fn rows(dc: &str, store: &Store, keep: impl Fn(&Intention) -> bool) -> Vec<IntentionRow> {
    store
        .intentions()
        .into_iter()
        .filter(|i| keep(i))
        .map(|i| row(dc, i))
        .collect()
}
