#!/usr/bin/env python3
"""Writes the ECS templates of the walkthrough's tasks (greeting.yml, name.yml, greeter.yml, ingress.yml) from the
Compose deployment, the one source of truth for what each task runs: the application's command comes from
deploy/compose/docker-compose.yml and the service definition its sidecar registers from deploy/compose/services/.

  ./render.py           rewrite the four templates
  ./render.py --check   exit 1 when a template differs from what the Compose deployment renders, or when the
                        Weft servers' and agents' flags in weft.yml differ from the Compose deployment's

Only what belongs to the platform differs: Compose gives each application `-node` (ECS tasks have their own host
names), mounts the definition and the token as files (ECS passes the definition inline and the token as a secret in
WEFT_HTTP_TOKEN), and names its nodes' addresses; ECS finds the task's address, ID and zone in the task metadata.
"""
import json
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
COMPOSE = HERE.parent / "compose"

# Per template: the step in the walkthrough, the compose service of the application (its first instance when there
# are several), the definition file(s) its sidecars register, the image parameter, how many tasks by default.
TASKS = {
    "greeting": dict(step=3, app="greeting", defs=["greeting.json"], image="GreeterImage", count=1),
    "name": dict(step=4, app="name", defs=["name.json"], image="GreeterImage", count=1),
    "greeter": dict(step=5, app="greeter-1", defs=["greeter-1.json", "greeter-2.json"], image="GreeterImage", count=2),
    "ingress": dict(step=6, app="ingress", defs=["ingress.json"], image="NginxImage", count=1),
}

# Flags whose values name one platform's plumbing (addresses, mounted files, node names), not the deployment.
PLATFORM_FLAGS = {"-node", "-bind", "-retry-join", "-config-file", "-token-file", "-http-addr"}


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms (!Ref, !Sub, ...) kept as {"!Ref": value}."""


def _intrinsic(loader, suffix, node):
    if isinstance(node, yaml.SequenceNode):
        return {"!" + suffix: loader.construct_sequence(node, deep=True)}
    if isinstance(node, yaml.MappingNode):
        return {"!" + suffix: loader.construct_mapping(node, deep=True)}
    return {"!" + suffix: loader.construct_scalar(node)}


CfnLoader.add_multi_constructor("!", _intrinsic)


def compose():
    return yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())


def without_platform_flags(command):
    """The command with -flag value pairs of PLATFORM_FLAGS left out."""
    out, skip = [], False
    for word in command:
        if skip:
            skip = False
        elif word in PLATFORM_FLAGS:
            skip = True
        else:
            out.append(str(word))
    return out


def definition(files):
    """The service definition every instance registers: the files agree on everything but the instance ID (ECS
    makes one from the task ID)."""
    defs = []
    for f in files:
        d = json.loads((COMPOSE / "services" / f).read_text())
        d["service"].pop("id", None)
        defs.append(d)
    if any(d != defs[0] for d in defs):
        sys.exit(f"render: {files} differ in more than their id; one task definition cannot serve them all")
    return json.dumps(defs[0], separators=(",", ":"), sort_keys=True)


def yaml_list(words, indent):
    pad = " " * indent
    return "".join(f"{pad}- {json.dumps(w)}\n" for w in words)


def render(name, t, services):
    app = services[t["app"]]
    app_command = without_platform_flags(app.get("command", []))
    listen_port = 80 if name == "ingress" else None
    sidecar = ["connect", "proxy", "-register-service", definition(t["defs"])]
    image = t["image"]
    image_doc = ("The nginx image" if image == "NginxImage" else "The greeter-demo image")
    app_container = f"""        - Name: {name}
          Image: !Ref {image}
          Essential: true
          MemoryReservation: 64
"""
    if app_command:
        app_container += "          Command:\n" + yaml_list(app_command, 12)
    if listen_port:
        app_container += f"          PortMappings: [{{ ContainerPort: {listen_port}, Protocol: tcp }}]\n"
    app_container += f"""          LogConfiguration:
            LogDriver: awslogs
            Options:
              awslogs-group: {{ "Fn::ImportValue": !Sub "${{WeftStack}}-Logs" }}
              awslogs-region: !Ref AWS::Region
              awslogs-stream-prefix: {name}
"""
    groups = '[{ "Fn::ImportValue": !Sub "${ClusterStack}-TaskGroup" }]'
    load_balancer = ""
    extra_resources = ""
    outputs = ""
    service_depends = ""
    if name == "ingress":
        groups = '[{ "Fn::ImportValue": !Sub "${ClusterStack}-TaskGroup" }, !Ref IngressGroup]'
        service_depends = "    DependsOn: Listener\n"
        load_balancer = f"""      LoadBalancers:
        - {{ ContainerName: {name}, ContainerPort: {listen_port}, TargetGroupArn: !Ref Targets }}
"""
        extra_resources = f"""
  # --- the public edge: an Application Load Balancer in the public subnets in front of nginx -------------------
  AlbGroup:
    Type: AWS::EC2::SecurityGroup
    Properties:
      GroupDescription: The load balancer, open on port 80 to PublicCidr
      VpcId: {{ "Fn::ImportValue": !Sub "${{ClusterStack}}-Vpc" }}
      SecurityGroupIngress:
        - {{ IpProtocol: tcp, FromPort: 80, ToPort: 80, CidrIp: !Ref PublicCidr, Description: HTTP from the public }}
  IngressGroup:
    Type: AWS::EC2::SecurityGroup
    Properties:
      GroupDescription: The ingress task, reachable on port {listen_port} from the load balancer only
      VpcId: {{ "Fn::ImportValue": !Sub "${{ClusterStack}}-Vpc" }}
      SecurityGroupIngress:
        - {{ IpProtocol: tcp, FromPort: {listen_port}, ToPort: {listen_port}, SourceSecurityGroupId: !Ref AlbGroup, Description: HTTP from the load balancer }}
  Alb:
    Type: AWS::ElasticLoadBalancingV2::LoadBalancer
    Properties:
      Type: application
      Scheme: internet-facing
      Subnets: !Split [",", {{ "Fn::ImportValue": !Sub "${{ClusterStack}}-PublicSubnets" }}]
      SecurityGroups: [!Ref AlbGroup]
  Targets:
    Type: AWS::ElasticLoadBalancingV2::TargetGroup
    Properties:
      TargetType: ip
      Protocol: HTTP
      Port: {listen_port}
      VpcId: {{ "Fn::ImportValue": !Sub "${{ClusterStack}}-Vpc" }}
      HealthCheckPath: /
      HealthCheckIntervalSeconds: 10
      HealthyThresholdCount: 2
      # A task being replaced deregisters its sidecar first; the load balancer stops sending it requests as fast.
      TargetGroupAttributes: [{{ Key: deregistration_delay.timeout_seconds, Value: "15" }}]
  Listener:
    Type: AWS::ElasticLoadBalancingV2::Listener
    Properties:
      LoadBalancerArn: !Ref Alb
      Protocol: HTTP
      Port: 80
      DefaultActions: [{{ Type: forward, TargetGroupArn: !Ref Targets }}]
"""
        outputs = """
Outputs:
  Url:
    Description: The walkthrough through the load balancer (nginx, then the mesh to a greeter)
    Value: !Sub "http://${Alb.DNSName}/"
"""
    public_cidr = ""
    if name == "ingress":
        public_cidr = """  PublicCidr:
    Type: String
    Default: 0.0.0.0/0
    Description: Who may reach the load balancer.
    AllowedPattern: '^(\\d{1,3}\\.){3}\\d{1,3}/([0-9]|[12][0-9]|3[0-2])$'
    ConstraintDescription: an IPv4 CIDR block
"""
    return f"""# Generated by deploy/ecs/render.py from deploy/compose (docker-compose.yml, services/): edit those, then run
# ./render.py. The test command checks that this file is what they render.
AWSTemplateFormatVersion: "2010-09-09"
Description: >-
  Weft on ECS, step {t["step"]} of 6: the {name} service, each task an application container listening on loopback
  and a Weft sidecar that registers the task (address, ID and zone from the ECS task metadata) through its host's
  agent and carries all traffic in and out over mutual TLS.

Parameters:
  ClusterStack:
    Type: String
    Description: The name of the cluster.yml stack.
    AllowedPattern: '^[A-Za-z][A-Za-z0-9-]{{0,127}}$'
  WeftStack:
    Type: String
    Description: The name of the weft.yml stack.
    AllowedPattern: '^[A-Za-z][A-Za-z0-9-]{{0,127}}$'
  WeftImage:
    Type: String
    Description: The weft image (push-images.sh prints it).
    AllowedPattern: '^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+(:[A-Za-z0-9._-]+|@sha256:[a-f0-9]{{64}})$'
    ConstraintDescription: an image URI with a registry, a repository and a tag or digest
  {image}:
    Type: String
    Description: {image_doc} (push-images.sh prints it).
    AllowedPattern: '^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+(:[A-Za-z0-9._-]+|@sha256:[a-f0-9]{{64}})$'
    ConstraintDescription: an image URI with a registry, a repository and a tag or digest
  TokenSecret:
    Type: String
    Description: >-
      ARN of the Secrets Manager secret holding the ACL token of the {name} service (a token with its service
      identity; see README).
    AllowedPattern: '^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\\d{{12}}:secret:[A-Za-z0-9/_+=.@-]+$'
    ConstraintDescription: a Secrets Manager secret ARN
  TaskCount:
    Type: Number
    Default: {t["count"]}
    MinValue: 1
    MaxValue: 50
    Description: How many tasks.
{public_cidr}
Resources:
  Task:
    Type: AWS::ECS::TaskDefinition
    Properties:
      Family: {name}
      NetworkMode: awsvpc
      RequiresCompatibilities: [EC2]
      ExecutionRoleArn: {{ "Fn::ImportValue": !Sub "${{WeftStack}}-ExecutionRole" }}
      ContainerDefinitions:
{app_container}        - Name: weft-sidecar
          Image: !Ref WeftImage
          Essential: true
          MemoryReservation: 32
          # ECS stops the sidecar first (it depends on the application), with SIGTERM: it deregisters the task at
          # once and drains open connections for up to 10 s, well within this.
          StopTimeout: 20
          DependsOn: [{{ ContainerName: {name}, Condition: START }}]
          Command:
{yaml_list(sidecar, 12)}          Secrets:
            - {{ Name: WEFT_HTTP_TOKEN, ValueFrom: !Ref TokenSecret }}
          LogConfiguration:
            LogDriver: awslogs
            Options:
              awslogs-group: {{ "Fn::ImportValue": !Sub "${{WeftStack}}-Logs" }}
              awslogs-region: !Ref AWS::Region
              awslogs-stream-prefix: {name}-sidecar
  Service:
    Type: AWS::ECS::Service
{service_depends}    Properties:
      ServiceName: {name}
      Cluster: {{ "Fn::ImportValue": !Sub "${{ClusterStack}}-Cluster" }}
      TaskDefinition: !Ref Task
      LaunchType: EC2
      DesiredCount: !Ref TaskCount
      PlacementStrategies: [{{ Type: spread, Field: "attribute:ecs.availability-zone" }}]
      PlacementConstraints: [{{ Type: memberOf, Expression: "attribute:weft-role == host" }}]
      NetworkConfiguration:
        AwsvpcConfiguration:
          AssignPublicIp: DISABLED
          Subnets: !Split [",", {{ "Fn::ImportValue": !Sub "${{ClusterStack}}-PrivateSubnets" }}]
          SecurityGroups: {groups}
{load_balancer}{extra_resources}{outputs}"""


def agent_flags_match(services):
    """weft.yml's server and agent commands carry Compose's flags (less the platform's) and its agent.json."""
    template = yaml.load((HERE / "weft.yml").read_text(), Loader=CfnLoader)
    agent_json = json.loads((COMPOSE / "config" / "agent.json").read_text())
    problems = []
    for resource, compose_service in [("ServerTask", "server-1"), ("AgentTask", "host-a")]:
        command = template["Resources"][resource]["Properties"]["ContainerDefinitions"][0]["Command"]
        words = [w if isinstance(w, str) else "<address>" for w in command]
        ecs = without_platform_flags(words)
        settings = {}
        rest = []
        it = iter(ecs)
        for w in it:
            if w == "-datacenter":
                settings["datacenter"] = next(it)
            elif w == "-hcl":
                key, _, value = next(it).partition("=")
                key = key.strip()
                if key in agent_json:
                    settings[key] = json.loads(value.strip())
            else:
                rest.append(w)
        want = without_platform_flags(services[compose_service]["command"])
        if rest != want:
            problems.append(f"weft.yml {resource}: flags {rest} differ from docker-compose.yml {compose_service}: {want}")
        if settings != agent_json:
            problems.append(f"weft.yml {resource}: settings {settings} differ from config/agent.json {agent_json}")
    return problems


def main():
    check = "--check" in sys.argv[1:]
    services = compose()["services"]
    problems = []
    for name, t in TASKS.items():
        text = render(name, t, services)
        path = HERE / f"{name}.yml"
        if check:
            if not path.exists() or path.read_text() != text:
                problems.append(f"{path.name} is not what deploy/compose renders: run deploy/ecs/render.py")
        else:
            path.write_text(text)
    if check:
        problems += agent_flags_match(services)
        for p in problems:
            print(f"render: {p}", file=sys.stderr)
        if problems:
            sys.exit(1)
        print("render: the ECS templates match the Compose deployment")


if __name__ == "__main__":
    main()
