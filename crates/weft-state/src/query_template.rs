//! Prepared query templates: the `${...}` placeholders of a template's `Service` block, filled from the name a
//! query was asked by. The forms are Consul's (HIL): `${name.full}`, `${name.prefix}`, `${name.suffix}`,
//! `${match(N)}` (the template regexp's group N, empty when absent) and `${agent.segment}`; `$${` is a literal
//! `${`. Only those forms exist, so a template is checked by rendering it once when it is written.

use regex::Regex;
use weft_types::query::{PreparedQuery, ServiceQuery, TEMPLATE_NAME_PREFIX_MATCH};

/// Largest compiled template regexp (the regex crate's default is 10 MiB; a query needs far less).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// What placeholders are filled from.
struct Vars<'a> {
    full: &'a str,
    prefix: &'a str,
    groups: Vec<String>,
}

/// Compiles a template as Consul does when it is written: a known type, a regexp that compiles, and placeholders
/// that render (tried with the template's own name). `None` for a static query or a template without a regexp;
/// the compiled regexp is kept with the query, so lookups (DNS's too) never compile one.
pub fn compile(q: &PreparedQuery) -> Result<Option<Regex>, String> {
    if !q.is_template() {
        return Ok(None);
    }
    if q.template.kind != TEMPLATE_NAME_PREFIX_MATCH {
        return Err(format!("Bad Template.Type '{}'", q.template.kind));
    }
    let re = if q.template.regexp.is_empty() {
        None
    } else {
        Some(
            regex::RegexBuilder::new(&q.template.regexp)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| format!("Bad Regexp: {e}"))?,
        )
    };
    render(q, re.as_ref(), &q.name)?;
    Ok(re)
}

/// The query `q` (a template, with its compiled regexp `re`) becomes when asked as `asked`: its `Service` block
/// with every placeholder filled.
pub fn render(q: &PreparedQuery, re: Option<&Regex>, asked: &str) -> Result<PreparedQuery, String> {
    let groups = re.map(|re| captures(re, asked)).unwrap_or_default();
    let vars = Vars {
        full: asked,
        prefix: &q.name,
        groups,
    };
    let mut out = q.clone();
    out.service = render_service(&q.service, &vars)?;
    if q.template.remove_empty_tags {
        out.service.tags.retain(|t| !t.is_empty());
    }
    Ok(out)
}

fn captures(re: &Regex, text: &str) -> Vec<String> {
    re.captures(text)
        .map(|c| {
            c.iter()
                .map(|m| m.map_or(String::new(), |m| m.as_str().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn render_service(s: &ServiceQuery, vars: &Vars<'_>) -> Result<ServiceQuery, String> {
    let one = |path: &str, text: &str| {
        fill(text, vars).map_err(|e| format!("Bad format '{text}' in Service{path}: {e}"))
    };
    let list = |path: &str, items: &[String]| -> Result<Vec<String>, String> {
        items
            .iter()
            .enumerate()
            .map(|(i, t)| one(&format!("{path}[{i}]"), t))
            .collect()
    };
    let mut out = s.clone();
    out.service = one(".Service", &s.service)?;
    out.sameness_group = one(".SamenessGroup", &s.sameness_group)?;
    out.near = one(".Near", &s.near)?;
    out.peer = one(".Peer", &s.peer)?;
    out.tags = list(".Tags", &s.tags)?;
    out.ignore_check_ids = list(".IgnoreCheckIDs", &s.ignore_check_ids)?;
    out.failover.datacenters = list(".Failover.Datacenters", &s.failover.datacenters)?;
    for (i, t) in out.failover.targets.iter_mut().enumerate() {
        t.peer = one(&format!(".Failover.Targets[{i}].Peer"), &t.peer)?;
        t.datacenter = one(&format!(".Failover.Targets[{i}].Datacenter"), &t.datacenter)?;
    }
    for (k, v) in out.node_meta.iter_mut() {
        *v = one(&format!(".NodeMeta[{k}]"), v)?;
    }
    for (k, v) in out.service_meta.iter_mut() {
        *v = one(&format!(".ServiceMeta[{k}]"), v)?;
    }
    Ok(out)
}

/// `text` with its placeholders filled.
fn fill(text: &str, vars: &Vars<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| "unterminated '${' placeholder".to_string())?;
            out.push_str(&value(after[..end].trim(), vars)?);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn value(expr: &str, vars: &Vars<'_>) -> Result<String, String> {
    Ok(match expr {
        "name.full" => vars.full.to_string(),
        "name.prefix" => vars.prefix.to_string(),
        // Consul strips the prefix as written: a name asked in another case keeps it whole.
        "name.suffix" => vars
            .full
            .strip_prefix(vars.prefix)
            .unwrap_or(vars.full)
            .to_string(),
        // Weft has no network segments (an Enterprise feature): always empty, as in Consul's CE.
        "agent.segment" => String::new(),
        call if call.starts_with("match(") && call.ends_with(')') => {
            let arg = call["match(".len()..call.len() - 1].trim();
            let n: usize = arg
                .parse()
                .map_err(|_| format!("match() takes a group number, not '{arg}'"))?;
            vars.groups.get(n).cloned().unwrap_or_default()
        }
        other => return Err(format!("unknown variable accessed: {other}")),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use weft_types::query::QueryTemplate;

    fn template(name: &str, regexp: &str, service: &str, tags: &[&str]) -> PreparedQuery {
        PreparedQuery {
            name: name.into(),
            template: QueryTemplate {
                kind: TEMPLATE_NAME_PREFIX_MATCH.into(),
                regexp: regexp.into(),
                remove_empty_tags: true,
            },
            service: ServiceQuery {
                service: service.into(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                ..ServiceQuery::default()
            },
            ..PreparedQuery::default()
        }
    }

    #[test]
    fn placeholders_fill_from_the_name_asked() {
        let q = template(
            "geo-db",
            r"^geo-db-(.*?)-([^\-]+?)$",
            "mysql-${match(1)}",
            &[
                "${match(2)}",
                "${match(7)}",
                "$${literal}",
                "${name.suffix}|${name.prefix}|${name.full}",
            ],
        );
        let re = compile(&q).unwrap();
        let r = render(&q, re.as_ref(), "geo-db-customer-primary").unwrap();
        assert_eq!(r.service.service, "mysql-customer");
        assert_eq!(
            r.service.tags,
            vec![
                "primary",
                "${literal}",
                "-customer-primary|geo-db|geo-db-customer-primary"
            ]
        );
        // No match: the groups are empty, and so is the tag they fill (removed).
        let r = render(&q, re.as_ref(), "geo-db").unwrap();
        assert_eq!(r.service.service, "mysql-");
        assert_eq!(r.service.tags.len(), 2);
    }

    #[test]
    fn bad_templates_are_refused_when_written() {
        let mut q = template("t", "", "${name.full}", &[]);
        assert_eq!(compile(&q).map(|_| ()), Ok(()));
        q.template.kind = "other".into();
        assert_eq!(
            compile(&q).map(|_| ()).unwrap_err(),
            "Bad Template.Type 'other'"
        );
        let q = template("t", "(", "x", &[]);
        assert!(compile(&q)
            .map(|_| ())
            .unwrap_err()
            .starts_with("Bad Regexp: "));
        let q = template("t", "", "${nope}", &[]);
        assert_eq!(
            compile(&q).map(|_| ()).unwrap_err(),
            "Bad format '${nope}' in Service.Service: unknown variable accessed: nope"
        );
        let q = template("t", "", "ok", &["${name.full"]);
        assert!(compile(&q)
            .map(|_| ())
            .unwrap_err()
            .contains("Service.Tags[0]"));
        let q = template("t", "", "${match(x)}", &[]);
        assert!(compile(&q).map(|_| ()).is_err());
    }
}
