//! `weft acl bootstrap|token|policy|role|auth-method|binding-rule|set-agent-token`: Consul's ACL commands, their flags, their output
//! (`-format pretty` by default, or `json`) and their exit codes (0, or 1 with the agent's reason on stderr).

use crate::client::{segment, Api, HttpArgs};
use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

#[derive(Subcommand, Debug)]
pub enum AclCmd {
    /// Creates the first management token (once).
    Bootstrap(OutputArgs),
    /// Creates, reads, updates, clones, deletes and lists tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Creates, reads, updates, deletes and lists policies.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Creates, reads, deletes and lists roles.
    #[command(subcommand)]
    Role(RoleCmd),
    /// Creates, reads, updates, deletes and lists auth methods (how `weft login` checks a credential).
    #[command(subcommand)]
    AuthMethod(super::auth::AuthMethodCmd),
    /// Creates, reads, updates, deletes and lists binding rules (what a login's token grants).
    #[command(subcommand)]
    BindingRule(super::auth::BindingRuleCmd),
    /// Sets one of the local agent's own tokens (default, agent, agent_recovery, ...).
    SetAgentToken(SetAgentTokenArgs),
}

#[derive(Args, Debug)]
pub struct OutputArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    /// `pretty` or `json`.
    #[arg(long, default_value = "pretty")]
    pub format: String,
}

/// What a token or role grants, as flags.
#[derive(Args, Debug, Default)]
pub struct GrantArgs {
    #[arg(long = "policy-name")]
    pub policy_names: Vec<String>,
    #[arg(long = "policy-id")]
    pub policy_ids: Vec<String>,
    /// `NAME` or `NAME:DC1,DC2`.
    #[arg(long = "service-identity")]
    pub service_identities: Vec<String>,
    /// `NAME:DC`.
    #[arg(long = "node-identity")]
    pub node_identities: Vec<String>,
    /// A templated policy's name (`builtin/service`), with `-var name:VALUE`.
    #[arg(long = "templated-policy")]
    pub templated_policies: Vec<String>,
    #[arg(long = "var")]
    pub vars: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    Create(TokenCreateArgs),
    Read(TokenReadArgs),
    Update(TokenUpdateArgs),
    Clone(TokenCloneArgs),
    Delete(AccessorArgs),
    List(OutputArgs),
}

#[derive(Args, Debug)]
pub struct TokenCreateArgs {
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub grants: GrantArgs,
    #[arg(long = "role-name")]
    pub role_names: Vec<String>,
    #[arg(long = "role-id")]
    pub role_ids: Vec<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// A duration (`1h`) after which the token stops working.
    #[arg(long = "expires-ttl")]
    pub expires_ttl: Option<String>,
    #[arg(long)]
    pub local: bool,
    /// Use this SecretID instead of a generated one.
    #[arg(long)]
    pub secret: Option<String>,
    /// Use this AccessorID instead of a generated one.
    #[arg(long)]
    pub accessor: Option<String>,
}

#[derive(Args, Debug)]
pub struct TokenReadArgs {
    #[command(flatten)]
    pub out: OutputArgs,
    #[arg(long = "accessor-id", alias = "id")]
    pub accessor_id: Option<String>,
    /// The token this command runs with.
    #[arg(long = "self")]
    pub own: bool,
    #[arg(long)]
    pub expanded: bool,
}

#[derive(Args, Debug)]
pub struct TokenUpdateArgs {
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub grants: GrantArgs,
    #[arg(long = "role-name")]
    pub role_names: Vec<String>,
    #[arg(long = "role-id")]
    pub role_ids: Vec<String>,
    #[arg(long = "accessor-id", alias = "id")]
    pub accessor_id: String,
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Args, Debug)]
pub struct TokenCloneArgs {
    #[command(flatten)]
    pub out: OutputArgs,
    #[arg(long = "accessor-id", alias = "id")]
    pub accessor_id: String,
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Args, Debug)]
pub struct AccessorArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    #[arg(long = "accessor-id", alias = "id")]
    pub accessor_id: String,
}

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    Create(PolicyWriteArgs),
    Read(NamedArgs),
    Update(PolicyWriteArgs),
    Delete(NamedArgs),
    List(OutputArgs),
}

#[derive(Args, Debug)]
pub struct PolicyWriteArgs {
    #[command(flatten)]
    pub out: OutputArgs,
    /// Update only: the policy's ID.
    #[arg(long)]
    pub id: Option<String>,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// The rules, or `@FILE` to read them from a file.
    #[arg(long)]
    pub rules: Option<String>,
    #[arg(long = "valid-datacenter")]
    pub datacenters: Vec<String>,
}

#[derive(Args, Debug)]
pub struct NamedArgs {
    #[command(flatten)]
    pub out: OutputArgs,
    #[arg(long)]
    pub id: Option<String>,
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum RoleCmd {
    Create(RoleCreateArgs),
    Read(NamedArgs),
    /// Changes a role: the flags given replace those kinds of links; the rest are kept.
    Update(RoleUpdateArgs),
    Delete(NamedArgs),
    List(OutputArgs),
}

#[derive(Args, Debug)]
pub struct RoleCreateArgs {
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub grants: GrantArgs,
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Args, Debug)]
pub struct RoleUpdateArgs {
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub grants: GrantArgs,
    #[arg(long)]
    pub id: String,
    /// A new name.
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Args, Debug)]
pub struct SetAgentTokenArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    /// default, agent, agent_recovery, replication, config_file_service_registration or dns.
    pub kind: String,
    /// The token's SecretID.
    #[arg(value_name = "TOKEN")]
    pub secret: String,
}

pub async fn run(cmd: AclCmd) -> Result<i32> {
    let outcome = match cmd {
        AclCmd::Bootstrap(a) => bootstrap(a).await,
        AclCmd::Token(c) => token(c).await,
        AclCmd::Policy(c) => policy(c).await,
        AclCmd::Role(c) => role(c).await,
        AclCmd::AuthMethod(c) => super::auth::auth_method(c).await,
        AclCmd::BindingRule(c) => super::auth::binding_rule(c).await,
        AclCmd::SetAgentToken(a) => set_agent_token(a).await,
    };
    match outcome {
        Ok(()) => Ok(0),
        Err(e) => {
            eprintln!("{e}");
            Ok(1)
        }
    }
}

fn json_body(v: &Value) -> Option<Vec<u8>> {
    Some(v.to_string().into_bytes())
}

/// Sends, and turns a refusal into `what: <the agent's reason>`.
pub(super) async fn send(
    api: &Api,
    method: Method,
    path: &str,
    body: Option<Value>,
    what: &str,
) -> Result<Value> {
    let answer = api
        .ok(method, path, body.as_ref().and_then(json_body))
        .await
        .map_err(|e| anyhow!("{what}: {e}"))?;
    if answer.body.is_empty() {
        return Ok(Value::Null);
    }
    answer.json()
}

async fn bootstrap(a: OutputArgs) -> Result<()> {
    let api = Api::new(&a.http)?;
    let token = send(
        &api,
        Method::PUT,
        "/v1/acl/bootstrap",
        None,
        "Failed ACL bootstrapping",
    )
    .await?;
    show(&a.format, &token, print_token)
}

pub(super) fn show(format: &str, value: &Value, pretty: fn(&Value)) -> Result<()> {
    match format {
        "json" => println!("{}", serde_json::to_string_pretty(value)?),
        "pretty" => pretty(value),
        other => bail!("Invalid format {other:?}: use pretty or json"),
    }
    Ok(())
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn print_links(title: &str, links: &Value) {
    if let Some(items) = links.as_array().filter(|l| !l.is_empty()) {
        println!("{title}:");
        for l in items {
            println!("   {} - {}", text(&l["ID"]), text(&l["Name"]));
        }
    }
}

fn print_grants(v: &Value) {
    print_links("Policies", &v["Policies"]);
    if let Some(items) = v["ServiceIdentities"].as_array() {
        println!("Service Identities:");
        for i in items {
            let dcs = i["Datacenters"]
                .as_array()
                .map(|d| d.iter().map(text).collect::<Vec<_>>().join(", "))
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "all".into());
            println!("   {} (Datacenters: {dcs})", text(&i["ServiceName"]));
        }
    }
    if let Some(items) = v["NodeIdentities"].as_array() {
        println!("Node Identities:");
        for i in items {
            println!(
                "   {} (Datacenter: {})",
                text(&i["NodeName"]),
                text(&i["Datacenter"])
            );
        }
    }
    if let Some(items) = v["TemplatedPolicies"].as_array() {
        println!("Templated Policies:");
        for i in items {
            println!("   {}", text(&i["TemplateName"]));
            if let Some(name) = i["TemplateVariables"]["Name"].as_str() {
                println!("      Name: {name}");
            }
        }
    }
}

fn print_token(v: &Value) {
    println!("AccessorID:       {}", text(&v["AccessorID"]));
    println!("SecretID:         {}", text(&v["SecretID"]));
    println!("Description:      {}", text(&v["Description"]));
    println!(
        "Local:            {}",
        v["Local"].as_bool().unwrap_or(false)
    );
    println!("Create Time:      {}", text(&v["CreateTime"]));
    if let Some(t) = v["ExpirationTime"].as_str() {
        println!("Expiration Time:  {t}");
    }
    print_links("Roles", &v["Roles"]);
    print_grants(v);
}

fn print_tokens(v: &Value) {
    for (i, t) in v.as_array().into_iter().flatten().enumerate() {
        if i > 0 {
            println!();
        }
        print_token(t);
    }
}

fn print_policy(v: &Value) {
    println!("ID:           {}", text(&v["ID"]));
    println!("Name:         {}", text(&v["Name"]));
    println!("Description:  {}", text(&v["Description"]));
    let dcs = v["Datacenters"]
        .as_array()
        .map(|d| d.iter().map(text).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    println!("Datacenters:  {dcs}");
    if let Some(rules) = v["Rules"].as_str() {
        println!("Rules:\n{rules}");
    }
}

fn print_policies(v: &Value) {
    for p in v.as_array().into_iter().flatten() {
        println!("{}:", text(&p["Name"]));
        println!("   ID:           {}", text(&p["ID"]));
        println!("   Description:  {}", text(&p["Description"]));
    }
}

fn print_role(v: &Value) {
    println!("ID:           {}", text(&v["ID"]));
    println!("Name:         {}", text(&v["Name"]));
    println!("Description:  {}", text(&v["Description"]));
    print_grants(v);
}

fn print_roles(v: &Value) {
    for (i, r) in v.as_array().into_iter().flatten().enumerate() {
        if i > 0 {
            println!();
        }
        print_role(r);
    }
}

/// The request fields for `-policy-*`, `-service-identity`, `-node-identity` and `-templated-policy`.
fn grants_json(g: &GrantArgs, body: &mut Map<String, Value>) -> Result<()> {
    let mut policies: Vec<Value> = g.policy_ids.iter().map(|id| json!({"ID": id})).collect();
    policies.extend(g.policy_names.iter().map(|n| json!({"Name": n})));
    if !policies.is_empty() {
        body.insert("Policies".into(), Value::Array(policies));
    }
    let services: Vec<Value> = g
        .service_identities
        .iter()
        .map(|s| match s.split_once(':') {
            Some((name, dcs)) => {
                json!({"ServiceName": name, "Datacenters": dcs.split(',').collect::<Vec<_>>()})
            }
            None => json!({"ServiceName": s}),
        })
        .collect();
    if !services.is_empty() {
        body.insert("ServiceIdentities".into(), Value::Array(services));
    }
    let mut nodes = Vec::new();
    for n in &g.node_identities {
        let (name, dc) = n.split_once(':').ok_or_else(|| {
            anyhow!("Malformed -node-identity argument: {n:?} (want NAME:DATACENTER)")
        })?;
        nodes.push(json!({"NodeName": name, "Datacenter": dc}));
    }
    if !nodes.is_empty() {
        body.insert("NodeIdentities".into(), Value::Array(nodes));
    }
    let mut name = None;
    for v in &g.vars {
        match v.split_once(':') {
            Some(("name", value)) => name = Some(value.to_string()),
            _ => bail!("Malformed -var argument: {v:?} (want name:VALUE)"),
        }
    }
    let templated: Vec<Value> = g
        .templated_policies
        .iter()
        .map(|t| match &name {
            Some(n) => json!({"TemplateName": t, "TemplateVariables": {"Name": n}}),
            None => json!({"TemplateName": t}),
        })
        .collect();
    if !templated.is_empty() {
        body.insert("TemplatedPolicies".into(), Value::Array(templated));
    }
    Ok(())
}

/// Links and identities not given on the command line are kept: `current`'s are copied into `body` first, and the
/// flags then replace the kinds they name.
fn keep_grants(current: &Value, body: &mut Map<String, Value>, links: &[&str]) {
    let identities = ["ServiceIdentities", "NodeIdentities", "TemplatedPolicies"];
    for key in links.iter().chain(identities.iter()) {
        if !current[*key].is_null() {
            body.insert(key.to_string(), current[*key].clone());
        }
    }
}

fn roles_json(names: &[String], ids: &[String], body: &mut Map<String, Value>) {
    let mut roles: Vec<Value> = ids.iter().map(|id| json!({"ID": id})).collect();
    roles.extend(names.iter().map(|n| json!({"Name": n})));
    if !roles.is_empty() {
        body.insert("Roles".into(), Value::Array(roles));
    }
}

async fn token(cmd: TokenCmd) -> Result<()> {
    match cmd {
        TokenCmd::Create(a) => {
            let api = Api::new(&a.out.http)?;
            let mut body = Map::new();
            grants_json(&a.grants, &mut body)?;
            roles_json(&a.role_names, &a.role_ids, &mut body);
            for (key, value) in [
                ("Description", &a.description),
                ("ExpirationTTL", &a.expires_ttl),
                ("SecretID", &a.secret),
                ("AccessorID", &a.accessor),
            ] {
                if let Some(v) = value {
                    body.insert(key.into(), json!(v));
                }
            }
            if a.local {
                body.insert("Local".into(), json!(true));
            }
            let t = send(
                &api,
                Method::PUT,
                "/v1/acl/token",
                Some(Value::Object(body)),
                "Failed to create new token",
            )
            .await?;
            show(&a.out.format, &t, print_token)
        }
        TokenCmd::Read(a) => {
            let api = Api::new(&a.out.http)?;
            let path = match (&a.accessor_id, a.own) {
                (_, true) => "/v1/acl/token/self".to_string(),
                (Some(id), false) => format!(
                    "/v1/acl/token/{}{}",
                    segment(id),
                    if a.expanded { "?expanded" } else { "" }
                ),
                (None, false) => bail!("Must specify the -accessor-id parameter, or use -self"),
            };
            let t = send(&api, Method::GET, &path, None, "Error reading token").await?;
            show(&a.out.format, &t, print_token)
        }
        TokenCmd::Update(a) => {
            let api = Api::new(&a.out.http)?;
            let path = format!("/v1/acl/token/{}", segment(&a.accessor_id));
            let current = send(
                &api,
                Method::GET,
                &path,
                None,
                "Error when retrieving current token",
            )
            .await?;
            let mut body = Map::new();
            body.insert("AccessorID".into(), json!(a.accessor_id));
            body.insert(
                "Description".into(),
                json!(a
                    .description
                    .clone()
                    .unwrap_or_else(|| text(&current["Description"]).to_string())),
            );
            keep_grants(&current, &mut body, &["Policies", "Roles"]);
            grants_json(&a.grants, &mut body)?;
            roles_json(&a.role_names, &a.role_ids, &mut body);
            let t = send(
                &api,
                Method::PUT,
                &path,
                Some(Value::Object(body)),
                "Failed to update token",
            )
            .await?;
            show(&a.out.format, &t, print_token)
        }
        TokenCmd::Clone(a) => {
            let api = Api::new(&a.out.http)?;
            let body = a.description.as_ref().map(|d| json!({"Description": d}));
            let path = format!("/v1/acl/token/{}/clone", segment(&a.accessor_id));
            let t = send(&api, Method::PUT, &path, body, "Failed to clone token").await?;
            show(&a.out.format, &t, print_token)
        }
        TokenCmd::Delete(a) => {
            let api = Api::new(&a.http)?;
            let path = format!("/v1/acl/token/{}", segment(&a.accessor_id));
            send(&api, Method::DELETE, &path, None, "Error deleting token").await?;
            println!("Token {:?} deleted successfully", a.accessor_id);
            Ok(())
        }
        TokenCmd::List(a) => {
            let api = Api::new(&a.http)?;
            let list = send(
                &api,
                Method::GET,
                "/v1/acl/tokens",
                None,
                "Failed to retrieve the token list",
            )
            .await?;
            show(&a.format, &list, print_tokens)
        }
    }
}

/// `-rules` as given, or read from the file after `@`.
fn rules_text(rules: &str) -> Result<String> {
    match rules.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| anyhow!("Failed to read rules from {path}: {e}")),
        None => Ok(rules.to_string()),
    }
}

/// The path of the policy or role a `-id` or `-name` names.
fn named_path(kind: &str, a: &NamedArgs) -> Result<String> {
    match (&a.id, &a.name) {
        (Some(id), _) => Ok(format!("/v1/acl/{kind}/{}", segment(id))),
        (None, Some(name)) => Ok(format!("/v1/acl/{kind}/name/{}", segment(name))),
        (None, None) => bail!("Must specify either the -id or -name parameters"),
    }
}

async fn policy(cmd: PolicyCmd) -> Result<()> {
    match cmd {
        PolicyCmd::Create(a) => {
            if a.name.is_none() {
                bail!("Missing required '-name' flag");
            }
            let api = Api::new(&a.out.http)?;
            let body = policy_body(&a)?;
            let p = send(
                &api,
                Method::PUT,
                "/v1/acl/policy",
                Some(body),
                "Failed to create new policy",
            )
            .await?;
            show(&a.out.format, &p, print_policy)
        }
        PolicyCmd::Update(a) => {
            let api = Api::new(&a.out.http)?;
            let id = a.id.clone().ok_or_else(|| {
                anyhow!("Cannot update a policy without specifying the -id parameter")
            })?;
            let path = format!("/v1/acl/policy/{}", segment(&id));
            let current = send(
                &api,
                Method::GET,
                &path,
                None,
                "Error when retrieving current policy",
            )
            .await?;
            let mut body = policy_body(&a)?;
            for key in ["Name", "Description", "Rules", "Datacenters"] {
                let given = body
                    .get(key)
                    .is_some_and(|v| !v.is_null() && v != &json!(""));
                if !given {
                    body[key] = current[key].clone();
                }
            }
            let p = send(
                &api,
                Method::PUT,
                &path,
                Some(body),
                "Failed to update policy",
            )
            .await?;
            show(&a.out.format, &p, print_policy)
        }
        PolicyCmd::Read(a) => read_named(&POLICY, &a).await,
        PolicyCmd::Delete(a) => delete_named(&POLICY, &a).await,
        PolicyCmd::List(a) => list_all(&POLICY, &a).await,
    }
}

fn policy_body(a: &PolicyWriteArgs) -> Result<Value> {
    let rules = a.rules.as_deref().map(rules_text).transpose()?;
    Ok(json!({
        "Name": a.name.clone().unwrap_or_default(),
        "Description": a.description.clone().unwrap_or_default(),
        "Rules": rules.unwrap_or_default(),
        "Datacenters": if a.datacenters.is_empty() { Value::Null } else { json!(a.datacenters) },
    }))
}

/// Policies and roles: read, delete and list alike.
struct Kind {
    /// `/v1/acl/<path>/...`
    path: &'static str,
    /// `/v1/acl/<plural>`
    plural: &'static str,
    title: &'static str,
    one: fn(&Value),
    many: fn(&Value),
}

const POLICY: Kind = Kind {
    path: "policy",
    plural: "policies",
    title: "Policy",
    one: print_policy,
    many: print_policies,
};

const ROLE: Kind = Kind {
    path: "role",
    plural: "roles",
    title: "Role",
    one: print_role,
    many: print_roles,
};

async fn read_named(kind: &Kind, a: &NamedArgs) -> Result<()> {
    let api = Api::new(&a.out.http)?;
    let path = named_path(kind.path, a)?;
    let what = format!("Error reading {}", kind.path);
    let v = send(&api, Method::GET, &path, None, &what).await?;
    show(&a.out.format, &v, kind.one)
}

async fn delete_named(kind: &Kind, a: &NamedArgs) -> Result<()> {
    let api = Api::new(&a.out.http)?;
    let id = resolve_id(&api, kind.path, a).await?;
    let path = format!("/v1/acl/{}/{}", kind.path, segment(&id));
    let what = format!("Error deleting {}", kind.path);
    send(&api, Method::DELETE, &path, None, &what).await?;
    println!("{} {id:?} deleted successfully", kind.title);
    Ok(())
}

async fn list_all(kind: &Kind, a: &OutputArgs) -> Result<()> {
    let api = Api::new(&a.http)?;
    let path = format!("/v1/acl/{}", kind.plural);
    let what = format!("Failed to retrieve the {} list", kind.path);
    let list = send(&api, Method::GET, &path, None, &what).await?;
    show(&a.format, &list, kind.many)
}

/// The ID behind `-id` or `-name`.
async fn resolve_id(api: &Api, kind: &str, a: &NamedArgs) -> Result<String> {
    if let Some(id) = &a.id {
        return Ok(id.clone());
    }
    let v = send(
        api,
        Method::GET,
        &named_path(kind, a)?,
        None,
        &format!("Error finding the {kind}"),
    )
    .await?;
    Ok(text(&v["ID"]).to_string())
}

async fn role(cmd: RoleCmd) -> Result<()> {
    match cmd {
        RoleCmd::Create(a) => {
            let api = Api::new(&a.out.http)?;
            let mut body = Map::new();
            body.insert("Name".into(), json!(a.name));
            body.insert(
                "Description".into(),
                json!(a.description.clone().unwrap_or_default()),
            );
            grants_json(&a.grants, &mut body)?;
            let r = send(
                &api,
                Method::PUT,
                "/v1/acl/role",
                Some(Value::Object(body)),
                "Failed to create new role",
            )
            .await?;
            show(&a.out.format, &r, print_role)
        }
        RoleCmd::Update(a) => {
            let api = Api::new(&a.out.http)?;
            let path = format!("/v1/acl/role/{}", segment(&a.id));
            let current = send(
                &api,
                Method::GET,
                &path,
                None,
                "Error when retrieving current role",
            )
            .await?;
            let mut body = Map::new();
            body.insert("ID".into(), json!(a.id));
            for (key, given) in [("Name", &a.name), ("Description", &a.description)] {
                let value = given
                    .clone()
                    .unwrap_or_else(|| text(&current[key]).to_string());
                body.insert(key.into(), json!(value));
            }
            keep_grants(&current, &mut body, &["Policies"]);
            grants_json(&a.grants, &mut body)?;
            let r = send(
                &api,
                Method::PUT,
                &path,
                Some(Value::Object(body)),
                "Failed to update role",
            )
            .await?;
            show(&a.out.format, &r, print_role)
        }
        RoleCmd::Read(a) => read_named(&ROLE, &a).await,
        RoleCmd::Delete(a) => delete_named(&ROLE, &a).await,
        RoleCmd::List(a) => list_all(&ROLE, &a).await,
    }
}

async fn set_agent_token(a: SetAgentTokenArgs) -> Result<()> {
    let api = Api::new(&a.http)?;
    let path = format!("/v1/agent/token/{}", segment(&a.kind));
    send(
        &api,
        Method::PUT,
        &path,
        Some(json!({"Token": a.secret})),
        "Failed setting token",
    )
    .await?;
    println!("ACL token {:?} set successfully", a.kind);
    Ok(())
}
