//! `weft acl auth-method|binding-rule ...`, `weft login` and `weft logout`: Consul's commands for logging in with a
//! credential from the workload's platform (a JWT) instead of a token handed out by an operator.

use crate::client::{segment, Api, HttpArgs};
use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::acl::{send, show, OutputArgs};

#[derive(Subcommand, Debug)]
pub enum AuthMethodCmd {
    Create(MethodArgs),
    Read(MethodNameArgs),
    Update(MethodArgs),
    Delete(MethodNameArgs),
    List(OutputArgs),
}

#[derive(Args, Debug)]
pub struct MethodArgs {
    #[command(flatten)]
    pub out: OutputArgs,
    #[arg(long)]
    pub name: String,
    /// `jwt` (the only type Weft has).
    #[arg(long = "type")]
    pub kind: Option<String>,
    #[arg(long = "display-name")]
    pub display_name: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// The longest a login token lives (`10m`); none by default.
    #[arg(long = "max-token-ttl")]
    pub max_token_ttl: Option<String>,
    /// `local` (the default) or `global`.
    #[arg(long = "token-locality")]
    pub token_locality: Option<String>,
    /// The method's config as JSON, or `@FILE` to read it from a file.
    #[arg(long)]
    pub config: Option<String>,
}

#[derive(Args, Debug)]
pub struct MethodNameArgs {
    #[command(flatten)]
    pub out: OutputArgs,
    #[arg(long)]
    pub name: String,
}

#[derive(Subcommand, Debug)]
pub enum BindingRuleCmd {
    Create(RuleArgs),
    Read(RuleIdArgs),
    Update(RuleArgs),
    Delete(RuleIdArgs),
    List(RuleListArgs),
}

#[derive(Args, Debug)]
pub struct RuleArgs {
    #[command(flatten)]
    pub out: OutputArgs,
    /// Update only: the rule's ID.
    #[arg(long)]
    pub id: Option<String>,
    #[arg(long)]
    pub method: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// Which logins the rule applies to (`value.namespace == prod`, `"ops" in list.groups`).
    #[arg(long)]
    pub selector: Option<String>,
    /// `service`, `node`, `role`, `policy` or `templated-policy`.
    #[arg(long = "bind-type")]
    pub bind_type: Option<String>,
    /// The name bound, with `${value.x}` filled in from the login.
    #[arg(long = "bind-name")]
    pub bind_name: Option<String>,
    /// For `templated-policy`: `name=VALUE`.
    #[arg(long = "bind-vars")]
    pub bind_vars: Option<String>,
}

#[derive(Args, Debug)]
pub struct RuleIdArgs {
    #[command(flatten)]
    pub out: OutputArgs,
    #[arg(long)]
    pub id: String,
}

#[derive(Args, Debug)]
pub struct RuleListArgs {
    #[command(flatten)]
    pub out: OutputArgs,
    #[arg(long)]
    pub method: Option<String>,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    #[arg(long)]
    pub method: String,
    /// The file holding the credential (a JWT).
    #[arg(long = "bearer-token-file")]
    pub bearer_token_file: String,
    /// Where the new token's SecretID is written (mode 0600).
    #[arg(long = "token-sink-file")]
    pub token_sink_file: String,
    /// `key=value`, recorded in the token's description.
    #[arg(long)]
    pub meta: Vec<String>,
}

fn field(label: &str, v: &Value) {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Null => return,
        other => other.to_string(),
    };
    println!("{:<14} {text}", format!("{label}:"));
}

fn print_method(m: &Value) {
    field("Name", &m["Name"]);
    field("Type", &m["Type"]);
    field("DisplayName", &m["DisplayName"]);
    field("Description", &m["Description"]);
    field("MaxTokenTTL", &m["MaxTokenTTL"]);
    field("TokenLocality", &m["TokenLocality"]);
    if let Some(c) = m.get("Config") {
        println!("Config:");
        println!("{}", serde_json::to_string_pretty(c).unwrap_or_default());
    }
}

fn print_methods(list: &Value) {
    for (i, m) in list.as_array().into_iter().flatten().enumerate() {
        if i > 0 {
            println!();
        }
        print_method(m);
    }
}

fn print_rule(r: &Value) {
    field("ID", &r["ID"]);
    field("AuthMethod", &r["AuthMethod"]);
    field("Description", &r["Description"]);
    field("BindType", &r["BindType"]);
    field("BindName", &r["BindName"]);
    field("BindVars", &r["BindVars"]);
    field("Selector", &r["Selector"]);
}

fn print_rules(list: &Value) {
    for (i, r) in list.as_array().into_iter().flatten().enumerate() {
        if i > 0 {
            println!();
        }
        print_rule(r);
    }
}

fn config_json(text: &str) -> Result<Value> {
    let raw = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| anyhow!("Failed to read the config from {path}: {e}"))?,
        None => text.to_string(),
    };
    let v: Value =
        serde_json::from_str(&raw).map_err(|e| anyhow!("The config is not valid JSON: {e}"))?;
    if !v.is_object() {
        bail!("The config must be a JSON object");
    }
    Ok(v)
}

fn method_path(name: &str) -> String {
    format!("/v1/acl/auth-method/{}", segment(name))
}

pub async fn auth_method(cmd: AuthMethodCmd) -> Result<()> {
    match cmd {
        AuthMethodCmd::Create(a) => {
            let api = Api::new(&a.out.http)?;
            let kind = a
                .kind
                .clone()
                .ok_or_else(|| anyhow!("Missing required '-type' flag"))?;
            let config = a
                .config
                .as_deref()
                .map(config_json)
                .transpose()?
                .ok_or_else(|| anyhow!("Missing required '-config' flag"))?;
            let body = json!({
                "Name": a.name, "Type": kind,
                "DisplayName": a.display_name.clone().unwrap_or_default(),
                "Description": a.description.clone().unwrap_or_default(),
                "MaxTokenTTL": a.max_token_ttl.clone().unwrap_or_default(),
                "TokenLocality": a.token_locality.clone().unwrap_or_default(),
                "Config": config,
            });
            let m = send(
                &api,
                Method::PUT,
                "/v1/acl/auth-method",
                Some(body),
                "Failed to create new auth method",
            )
            .await?;
            show(&a.out.format, &m, print_method)
        }
        AuthMethodCmd::Update(a) => {
            let api = Api::new(&a.out.http)?;
            let path = method_path(&a.name);
            let mut body = send(
                &api,
                Method::GET,
                &path,
                None,
                "Error when retrieving current auth method",
            )
            .await?;
            let mut set = |key: &str, v: &Option<String>| {
                if let Some(v) = v {
                    body[key] = json!(v);
                }
            };
            set("DisplayName", &a.display_name);
            set("Description", &a.description);
            set("MaxTokenTTL", &a.max_token_ttl);
            set("TokenLocality", &a.token_locality);
            if let Some(c) = &a.config {
                body["Config"] = config_json(c)?;
            }
            let m = send(
                &api,
                Method::PUT,
                &path,
                Some(body),
                "Failed to update auth method",
            )
            .await?;
            show(&a.out.format, &m, print_method)
        }
        AuthMethodCmd::Read(a) => {
            let api = Api::new(&a.out.http)?;
            let m = send(
                &api,
                Method::GET,
                &method_path(&a.name),
                None,
                "Error reading auth method",
            )
            .await?;
            show(&a.out.format, &m, print_method)
        }
        AuthMethodCmd::Delete(a) => {
            let api = Api::new(&a.out.http)?;
            send(
                &api,
                Method::DELETE,
                &method_path(&a.name),
                None,
                "Error deleting auth method",
            )
            .await?;
            println!("Auth-method {:?} deleted successfully", a.name);
            Ok(())
        }
        AuthMethodCmd::List(a) => {
            let api = Api::new(&a.http)?;
            let list = send(
                &api,
                Method::GET,
                "/v1/acl/auth-methods",
                None,
                "Failed to retrieve the auth method list",
            )
            .await?;
            show(&a.format, &list, print_methods)
        }
    }
}

fn rule_body(a: &RuleArgs, body: &mut Map<String, Value>) -> Result<()> {
    let mut set = |key: &str, v: &Option<String>| {
        if let Some(v) = v {
            body.insert(key.into(), json!(v));
        }
    };
    set("AuthMethod", &a.method);
    set("Description", &a.description);
    set("Selector", &a.selector);
    set("BindType", &a.bind_type);
    set("BindName", &a.bind_name);
    if let Some(vars) = &a.bind_vars {
        let name = vars
            .strip_prefix("name=")
            .ok_or_else(|| anyhow!("-bind-vars takes name=VALUE"))?;
        body.insert("BindVars".into(), json!({ "Name": name }));
    }
    Ok(())
}

pub async fn binding_rule(cmd: BindingRuleCmd) -> Result<()> {
    match cmd {
        BindingRuleCmd::Create(a) => {
            let api = Api::new(&a.out.http)?;
            if a.method.is_none() {
                bail!("Missing required '-method' flag");
            }
            if a.bind_type.is_none() || a.bind_name.is_none() {
                bail!("Missing required '-bind-type' or '-bind-name' flag");
            }
            let mut body = Map::new();
            rule_body(&a, &mut body)?;
            let r = send(
                &api,
                Method::PUT,
                "/v1/acl/binding-rule",
                Some(Value::Object(body)),
                "Failed to create new binding rule",
            )
            .await?;
            show(&a.out.format, &r, print_rule)
        }
        BindingRuleCmd::Update(a) => {
            let api = Api::new(&a.out.http)?;
            let id = a.id.clone().ok_or_else(|| {
                anyhow!("Cannot update a binding rule without specifying the -id parameter")
            })?;
            let path = format!("/v1/acl/binding-rule/{}", segment(&id));
            let current = send(
                &api,
                Method::GET,
                &path,
                None,
                "Error when retrieving current binding rule",
            )
            .await?;
            let Value::Object(mut body) = current else {
                bail!("Error when retrieving current binding rule: not an object");
            };
            rule_body(&a, &mut body)?;
            let r = send(
                &api,
                Method::PUT,
                &path,
                Some(Value::Object(body)),
                "Failed to update binding rule",
            )
            .await?;
            show(&a.out.format, &r, print_rule)
        }
        BindingRuleCmd::Read(a) => {
            let api = Api::new(&a.out.http)?;
            let path = format!("/v1/acl/binding-rule/{}", segment(&a.id));
            let r = send(&api, Method::GET, &path, None, "Error reading binding rule").await?;
            show(&a.out.format, &r, print_rule)
        }
        BindingRuleCmd::Delete(a) => {
            let api = Api::new(&a.out.http)?;
            let path = format!("/v1/acl/binding-rule/{}", segment(&a.id));
            send(
                &api,
                Method::DELETE,
                &path,
                None,
                "Error deleting binding rule",
            )
            .await?;
            println!("Binding rule {:?} deleted successfully", a.id);
            Ok(())
        }
        BindingRuleCmd::List(a) => {
            let api = Api::new(&a.out.http)?;
            let path = match &a.method {
                Some(m) => format!(
                    "/v1/acl/binding-rules?authmethod={}",
                    crate::client::query_value(m)
                ),
                None => "/v1/acl/binding-rules".to_string(),
            };
            let list = send(
                &api,
                Method::GET,
                &path,
                None,
                "Failed to retrieve the binding rule list",
            )
            .await?;
            show(&a.out.format, &list, print_rules)
        }
    }
}

/// Writes `secret` to `path`, readable by its owner only, replacing what was there.
fn write_sink(path: &str, secret: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = format!("{path}.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| anyhow!("Error writing token to file sink {path}: {e}"))?;
    f.write_all(secret.as_bytes())
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| anyhow!("Error writing token to file sink {path}: {e}"))
}

/// `weft login`: exits 0 with the token in the sink file, or 1 with the reason.
pub async fn login(a: LoginArgs) -> Result<i32> {
    let outcome = async {
        let bearer = std::fs::read_to_string(&a.bearer_token_file).map_err(|e| {
            anyhow!(
                "Error reading bearer token file {}: {e}",
                a.bearer_token_file
            )
        })?;
        let bearer = bearer.trim();
        if bearer.is_empty() {
            bail!("No bearer token found in {}", a.bearer_token_file);
        }
        let mut meta = Map::new();
        for kv in &a.meta {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow!("Error parsing -meta {kv:?}: use key=value"))?;
            meta.insert(k.to_string(), json!(v));
        }
        let api = Api::new(&a.http)?;
        let body = json!({"AuthMethod": a.method, "BearerToken": bearer, "Meta": meta});
        let token = send(
            &api,
            Method::POST,
            "/v1/acl/login",
            Some(body),
            "Error logging in",
        )
        .await?;
        let secret = token["SecretID"]
            .as_str()
            .ok_or_else(|| anyhow!("Error logging in: the answer holds no SecretID"))?;
        write_sink(&a.token_sink_file, secret)
    }
    .await;
    Ok(exit(outcome))
}

/// `weft logout`: deletes the login token given with `-token`, `-token-file` or the environment.
pub async fn logout(a: HttpArgs) -> Result<i32> {
    let outcome = async {
        let api = Api::new(&a)?;
        send(
            &api,
            Method::POST,
            "/v1/acl/logout",
            None,
            "Error destroying token",
        )
        .await?;
        Ok(())
    }
    .await;
    Ok(exit(outcome))
}

fn exit(outcome: Result<()>) -> i32 {
    match outcome {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}
