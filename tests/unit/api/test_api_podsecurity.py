"""The pod security rule table: every rule refuses its forms by default, names the field and the
allowance, and an MCPTenant allowance (waiver or list entry) lets exactly that form through."""

from __future__ import annotations

import re
from typing import Any

import pytest

from moorage_api.mcptenant import (
    HOST_PATH_PATTERN,
    MCPTenant,
    PodSecurityRule,
    PodTemplateAllowances,
)
from moorage_api.podsecurity import (
    NO_ALLOWANCES,
    VOLUME_SECRET_REFERENCES,
    PodSecuritySubject,
    allowances_by_namespace,
    check_pod_security,
    merge_allowances,
)

R = PodSecurityRule
CONTAINER = "spec.podTemplateSpec.spec.containers[0]"


def pod(**spec: Any) -> dict[str, Any]:
    return {"spec": spec}


def container(**fields: Any) -> dict[str, Any]:
    return pod(containers=[{"name": "mcp", **fields}])


def subject(template: dict[str, Any] | None = None, **fields: Any) -> PodSecuritySubject:
    return PodSecuritySubject(name="time", namespace="team-a", pod_template=template, **fields)


# (id, subject, rule, refused field path, allowance that lets it through)
REFUSED: list[tuple[str, PodSecuritySubject, R, str, PodTemplateAllowances]] = [
    (
        "privileged",
        subject(container(securityContext={"privileged": True})),
        R.PRIVILEGED,
        f"{CONTAINER}.securityContext.privileged",
        PodTemplateAllowances(allow=[R.PRIVILEGED]),
    ),
    (
        "privileged-init-container",
        subject(pod(initContainers=[{"name": "i", "securityContext": {"privileged": True}}])),
        R.PRIVILEGED,
        "spec.podTemplateSpec.spec.initContainers[0].securityContext.privileged",
        PodTemplateAllowances(allow=[R.PRIVILEGED]),
    ),
    (
        "windows-host-process",
        subject(pod(securityContext={"windowsOptions": {"hostProcess": True}})),
        R.PRIVILEGED,
        "spec.podTemplateSpec.spec.securityContext.windowsOptions.hostProcess",
        PodTemplateAllowances(allow=[R.PRIVILEGED]),
    ),
    (
        "privilege-escalation",
        subject(container(securityContext={"allowPrivilegeEscalation": True})),
        R.PRIVILEGE_ESCALATION,
        f"{CONTAINER}.securityContext.allowPrivilegeEscalation",
        PodTemplateAllowances(allow=[R.PRIVILEGE_ESCALATION]),
    ),
    (
        "capability-listed",
        subject(container(securityContext={"capabilities": {"add": ["CHOWN", "SYS_ADMIN"]}})),
        R.CAPABILITIES,
        f"{CONTAINER}.securityContext.capabilities.add[1]",
        PodTemplateAllowances(capabilities=["SYS_ADMIN"]),
    ),
    (
        "capability-waived",
        subject(container(securityContext={"capabilities": {"add": ["NET_ADMIN"]}})),
        R.CAPABILITIES,
        f"{CONTAINER}.securityContext.capabilities.add[0]",
        PodTemplateAllowances(allow=[R.CAPABILITIES]),
    ),
    (
        "host-network",
        subject(pod(hostNetwork=True)),
        R.HOST_NAMESPACES,
        "spec.podTemplateSpec.spec.hostNetwork",
        PodTemplateAllowances(allow=[R.HOST_NAMESPACES]),
    ),
    (
        "host-pid",
        subject(pod(hostPID=True)),
        R.HOST_NAMESPACES,
        "spec.podTemplateSpec.spec.hostPID",
        PodTemplateAllowances(allow=[R.HOST_NAMESPACES]),
    ),
    (
        "host-ipc",
        subject(pod(hostIPC=True)),
        R.HOST_NAMESPACES,
        "spec.podTemplateSpec.spec.hostIPC",
        PodTemplateAllowances(allow=[R.HOST_NAMESPACES]),
    ),
    (
        "host-path-root",
        subject(pod(volumes=[{"name": "root", "hostPath": {"path": "/"}}])),
        R.HOST_PATH,
        "spec.podTemplateSpec.spec.volumes[0].hostPath.path",
        PodTemplateAllowances(allow=[R.HOST_PATH]),
    ),
    (
        "host-path-under-prefix",
        subject(pod(volumes=[{"name": "logs", "hostPath": {"path": "/var/log/app"}}])),
        R.HOST_PATH,
        "spec.podTemplateSpec.spec.volumes[0].hostPath.path",
        PodTemplateAllowances(host_path_prefixes=["/var/log"]),
    ),
    (
        "host-port",
        subject(container(ports=[{"containerPort": 80, "hostPort": 80}])),
        R.HOST_PORTS,
        f"{CONTAINER}.ports[0].hostPort",
        PodTemplateAllowances(allow=[R.HOST_PORTS]),
    ),
    (
        "unsafe-sysctl",
        subject(pod(securityContext={"sysctls": [{"name": "kernel.msgmax", "value": "1"}]})),
        R.SYSCTLS,
        "spec.podTemplateSpec.spec.securityContext.sysctls[0].name",
        PodTemplateAllowances(sysctls=["kernel.msgmax"]),
    ),
    (
        "proc-mount",
        subject(container(securityContext={"procMount": "Unmasked"})),
        R.PROC_MOUNT,
        f"{CONTAINER}.securityContext.procMount",
        PodTemplateAllowances(allow=[R.PROC_MOUNT]),
    ),
    (
        "selinux-type",
        subject(pod(securityContext={"seLinuxOptions": {"type": "spc_t"}})),
        R.SE_LINUX,
        "spec.podTemplateSpec.spec.securityContext.seLinuxOptions.type",
        PodTemplateAllowances(allow=[R.SE_LINUX]),
    ),
    (
        "selinux-user",
        subject(container(securityContext={"seLinuxOptions": {"user": "system_u"}})),
        R.SE_LINUX,
        f"{CONTAINER}.securityContext.seLinuxOptions.user",
        PodTemplateAllowances(allow=[R.SE_LINUX]),
    ),
    (
        "apparmor-field",
        subject(container(securityContext={"appArmorProfile": {"type": "Unconfined"}})),
        R.APP_ARMOR,
        f"{CONTAINER}.securityContext.appArmorProfile.type",
        PodTemplateAllowances(allow=[R.APP_ARMOR]),
    ),
    (
        "apparmor-annotation",
        subject(
            {
                "metadata": {
                    "annotations": {
                        "container.apparmor.security.beta.kubernetes.io/mcp": "unconfined"
                    }
                }
            }
        ),
        R.APP_ARMOR,
        "spec.podTemplateSpec.metadata.annotations[container.apparmor.security.beta.kubernetes.io/mcp]",
        PodTemplateAllowances(allow=[R.APP_ARMOR]),
    ),
    (
        "seccomp",
        subject(pod(securityContext={"seccompProfile": {"type": "Unconfined"}})),
        R.SECCOMP,
        "spec.podTemplateSpec.spec.securityContext.seccompProfile.type",
        PodTemplateAllowances(allow=[R.SECCOMP]),
    ),
    (
        "service-account-field",
        subject(None, service_account="admin"),
        R.SERVICE_ACCOUNT,
        "spec.serviceAccount",
        PodTemplateAllowances(service_accounts=["admin"]),
    ),
    (
        "service-account-in-template",
        subject(pod(serviceAccountName="admin")),
        R.SERVICE_ACCOUNT,
        "spec.podTemplateSpec.spec.serviceAccountName",
        PodTemplateAllowances(allow=[R.SERVICE_ACCOUNT]),
    ),
    (
        "deprecated-service-account-in-template",
        subject(pod(serviceAccount="admin")),
        R.SERVICE_ACCOUNT,
        "spec.podTemplateSpec.spec.serviceAccount",
        PodTemplateAllowances(service_accounts=["admin"]),
    ),
    (
        "probe-host",
        subject(container(livenessProbe={"httpGet": {"host": "169.254.169.254", "port": 80}})),
        R.HOST_PROBES,
        f"{CONTAINER}.livenessProbe.httpGet.host",
        PodTemplateAllowances(allow=[R.HOST_PROBES]),
    ),
    (
        "lifecycle-hook-host",
        subject(container(lifecycle={"preStop": {"tcpSocket": {"host": "10.0.0.1", "port": 22}}})),
        R.HOST_PROBES,
        f"{CONTAINER}.lifecycle.preStop.tcpSocket.host",
        PodTemplateAllowances(allow=[R.HOST_PROBES]),
    ),
    (
        "csi-node-publish-secret",
        subject(
            pod(
                volumes=[
                    {
                        "name": "v",
                        "csi": {"driver": "d", "nodePublishSecretRef": {"name": "db-creds"}},
                    }
                ]
            )
        ),
        R.SECRETS,
        "spec.podTemplateSpec.spec.volumes[0].csi.nodePublishSecretRef.name",
        PodTemplateAllowances(secrets=["db-creds"]),
    ),
    (
        "azure-file-secret",
        subject(
            pod(
                volumes=[
                    {
                        "name": "v",
                        "azureFile": {"secretName": "storage-key", "shareName": "s"},
                    }
                ]
            )
        ),
        R.SECRETS,
        "spec.podTemplateSpec.spec.volumes[0].azureFile.secretName",
        PodTemplateAllowances(secrets=["storage-key"]),
    ),
    (
        "secret-volume",
        subject(pod(volumes=[{"name": "s", "secret": {"secretName": "db-creds"}}])),
        R.SECRETS,
        "spec.podTemplateSpec.spec.volumes[0].secret.secretName",
        PodTemplateAllowances(secrets=["db-creds"]),
    ),
    (
        "projected-secret",
        subject(
            pod(
                volumes=[
                    {
                        "name": "p",
                        "projected": {
                            "sources": [{"configMap": {"name": "c"}}, {"secret": {"name": "tls"}}]
                        },
                    }
                ]
            )
        ),
        R.SECRETS,
        "spec.podTemplateSpec.spec.volumes[0].projected.sources[1].secret.name",
        PodTemplateAllowances(allow=[R.SECRETS]),
    ),
    (
        "secret-key-ref",
        subject(
            container(
                env=[{"name": "P", "valueFrom": {"secretKeyRef": {"name": "db", "key": "p"}}}]
            )
        ),
        R.SECRETS,
        f"{CONTAINER}.env[0].valueFrom.secretKeyRef.name",
        PodTemplateAllowances(secrets=["db"]),
    ),
    (
        "env-from-secret",
        subject(container(envFrom=[{"secretRef": {"name": "db"}}])),
        R.SECRETS,
        f"{CONTAINER}.envFrom[0].secretRef.name",
        PodTemplateAllowances(secrets=["db"]),
    ),
    (
        "image-pull-secret",
        subject(pod(imagePullSecrets=[{"name": "other-registry"}])),
        R.SECRETS,
        "spec.podTemplateSpec.spec.imagePullSecrets[0].name",
        PodTemplateAllowances(secrets=["other-registry"]),
    ),
]


@pytest.mark.parametrize(
    ("case", "rule", "path", "allowance"),
    [(s, r, p, a) for _, s, r, p, a in REFUSED],
    ids=[case_id for case_id, *_ in REFUSED],
)
def test_each_rule_refuses_by_default_and_its_allowance_permits(
    case: PodSecuritySubject, rule: R, path: str, allowance: PodTemplateAllowances
) -> None:
    [refusal] = check_pod_security(case, allowances=NO_ALLOWANCES)
    assert (refusal.rule, refusal.path) == (rule, path)
    assert f"pod security rule {rule.value}" in refusal.message
    assert "MCPTenant covering namespace 'team-a'" in refusal.message
    assert check_pod_security(case, allowances=allowance) == []


def test_every_rule_of_the_table_is_tested() -> None:
    assert {rule for _, _, rule, _, _ in REFUSED} == set(PodSecurityRule)


@pytest.mark.parametrize(
    ("kind", "ref", "name"),
    VOLUME_SECRET_REFERENCES,
    ids=[k for k, _, _ in VOLUME_SECRET_REFERENCES],
)
def test_every_volume_that_reads_a_secret_names_it_within_the_rules(
    kind: str, ref: str, name: str
) -> None:
    case = subject(pod(volumes=[{"name": "v", kind: {ref: {name: "db-creds"}}}]))
    [refusal] = check_pod_security(case, allowances=NO_ALLOWANCES)
    assert refusal.rule is R.SECRETS
    assert refusal.path == f"spec.podTemplateSpec.spec.volumes[0].{kind}.{ref}.{name}"
    allowed = PodTemplateAllowances(secrets=["db-creds"])
    assert check_pod_security(case, allowances=allowed) == []


def test_an_allowance_for_one_rule_does_not_permit_another() -> None:
    case = subject(pod(hostNetwork=True, volumes=[{"name": "r", "hostPath": {"path": "/"}}]))
    refusals = check_pod_security(case, allowances=PodTemplateAllowances(allow=[R.HOST_NAMESPACES]))
    assert [r.rule for r in refusals] == [R.HOST_PATH]


@pytest.mark.parametrize(
    "template",
    [
        pytest.param(
            container(
                securityContext={
                    "allowPrivilegeEscalation": False,
                    "privileged": False,
                    "capabilities": {"add": ["NET_BIND_SERVICE", "chown"], "drop": ["ALL"]},
                    "procMount": "Default",
                    "seccompProfile": {"type": "RuntimeDefault"},
                    "appArmorProfile": {"type": "Localhost", "localhostProfile": "p"},
                    "seLinuxOptions": {"type": "container_t", "level": "s0:c1"},
                },
                ports=[{"containerPort": 80, "hostPort": 0}],
            ),
            id="restricted-and-baseline-settings",
        ),
        pytest.param(
            pod(
                hostNetwork=False,
                serviceAccountName="time-sa",
                securityContext={"sysctls": [{"name": "net.ipv4.tcp_syncookies", "value": "1"}]},
                volumes=[
                    {"name": "e", "emptyDir": {}},
                    {"name": "c", "configMap": {"name": "settings"}},
                    {
                        "name": "t",
                        "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]},
                    },
                ],
            ),
            id="own-service-account-safe-sysctl-harmless-volumes",
        ),
        pytest.param(
            container(
                env=[{"name": "K", "valueFrom": {"secretKeyRef": {"name": "api-key", "key": "k"}}}]
            ),
            id="secret-named-in-spec-secrets",
        ),
        pytest.param(
            {
                "metadata": {
                    "annotations": {
                        "container.apparmor.security.beta.kubernetes.io/mcp": "runtime/default"
                    }
                }
            },
            id="apparmor-annotation-runtime-default",
        ),
    ],
)
def test_templates_within_the_rules_pass(template: dict[str, Any]) -> None:
    case = subject(template, secrets=frozenset({"api-key"}))
    assert check_pod_security(case, allowances=NO_ALLOWANCES) == []


def test_no_template_and_no_service_account_passes() -> None:
    assert check_pod_security(subject(None), allowances=NO_ALLOWANCES) == []


@pytest.mark.parametrize(
    ("account", "refused"),
    [("time-remote-proxy", False), ("time-sa", True), ("admin", True)],
)
def test_a_pod_with_its_own_service_account_accepts_only_that_one(
    account: str, refused: bool
) -> None:
    # An MCPRemoteProxy's pod runs as <name>-remote-proxy, not an MCPServer's <name>-sa.
    case = subject(pod(serviceAccountName=account), own_service_account="time-remote-proxy")
    refusals = check_pod_security(case, allowances=NO_ALLOWANCES)
    assert [r.rule for r in refusals] == ([R.SERVICE_ACCOUNT] if refused else [])
    if refused:
        assert "ServiceAccount 'time-remote-proxy', which Moorage creates" in refusals[0].message


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/var/log", True),
        ("/var/log/a/../b", True),
        ("/var/logs", False),
        ("/var/log/../../etc", False),
    ],
)
def test_host_path_prefixes_match_whole_path_components(path: str, allowed: bool) -> None:
    case = subject(pod(volumes=[{"name": "h", "hostPath": {"path": path}}]))
    allowances = PodTemplateAllowances(host_path_prefixes=["/var/log"])
    assert (check_pod_security(case, allowances=allowances) == []) is allowed


@pytest.mark.parametrize("prefix", ["var/log", "/var/log/", "/var/../etc", "/a/./b", "//a"])
def test_host_path_prefixes_must_be_absolute_normal_paths(prefix: str) -> None:
    with pytest.raises(ValueError, match="absolute path"):
        PodTemplateAllowances(host_path_prefixes=[prefix])


def tenant(name: str, namespaces: list[str], **allowances: Any) -> MCPTenant:
    return MCPTenant.model_validate(
        {"metadata": {"name": name}, "spec": {"namespaces": namespaces, "podTemplate": allowances}}
    )


def test_allowances_of_tenants_covering_a_namespace_add_up_and_stay_in_it() -> None:
    by_namespace = allowances_by_namespace(
        [
            tenant("a", ["team-a"], allow=["HostNamespaces"], secrets=["x"]),
            tenant("b", ["team-a", "team-b"], secrets=["x", "y"], serviceAccounts=["ops"]),
        ]
    )
    assert by_namespace["team-a"] == PodTemplateAllowances(
        allow=[R.HOST_NAMESPACES], secrets=["x", "y"], service_accounts=["ops"]
    )
    assert by_namespace["team-b"] == PodTemplateAllowances(
        secrets=["x", "y"], service_accounts=["ops"]
    )
    assert "team-c" not in by_namespace


def test_merging_nothing_allows_nothing() -> None:
    assert merge_allowances([]) == NO_ALLOWANCES


@pytest.mark.parametrize("prefix", ["/", "/var/log", "/a/.b", "/a/..b", "/a/b."])
def test_host_path_prefixes_the_crd_pattern_and_the_model_agree_on(prefix: str) -> None:
    assert re.fullmatch(HOST_PATH_PATTERN, prefix)
    assert PodTemplateAllowances(host_path_prefixes=[prefix]).host_path_prefixes == [prefix]


@pytest.mark.parametrize("prefix", ["var/log", "/var/log/", "/var/../etc", "/a/./b", "//a", "/."])
def test_host_path_prefixes_the_crd_pattern_refuses(prefix: str) -> None:
    assert not re.search(HOST_PATH_PATTERN, prefix)
