"""The workload builders: StatefulSet, headless Service, egress NetworkPolicy, drift, readiness."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage_api.documents import OutboundNetwork, parse_permission_profile
from moorage_api.podpatch import PodPatchError
from moorage_api.podsecurity import NO_ALLOWANCES, check_pod_security
from moorage_api.runconfig import RunConfigPermissionProfile, load_runconfig
from moorage_proxyrunner.workload.builders import (
    EgressRules,
    OwnerRef,
    ProfileError,
    SecretEnv,
    WorkloadSpec,
    build_backend_urls,
    build_headless_service,
    build_label_selector,
    build_mcp_service,
    build_network_policy,
    build_statefulset,
    compute_egress,
    describe_pod_problems,
    desired_workload,
    egress_from_outbound,
    has_drifted,
    is_statefulset_ready,
    is_subset,
    needs_profile_document,
    pod_security_subject,
    profile_document_key,
    ready_pods,
    workload_spec_from_runconfig,
)

OWNER = OwnerRef(api_version="moorage.dev/v1alpha1", kind="MCPServer", name="time", uid="u-1")
LABELS = {
    "app": "mcpserver",
    "app.kubernetes.io/name": "mcpserver",
    "app.kubernetes.io/instance": "time",
    "app.kubernetes.io/managed-by": "moorage",
    "app.kubernetes.io/part-of": "moorage",
    "moorage.dev/mcpserver": "time",
    "app.kubernetes.io/component": "mcp-server",
}
SELECTOR = {"moorage.dev/mcpserver": "time", "app.kubernetes.io/component": "mcp-server"}
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
RESTRICTED_POD = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def make_spec(**changes: Any) -> WorkloadSpec:
    base = WorkloadSpec(name="time", namespace="ns", owner=OWNER, image="ghcr.io/x/time:1")
    return dataclasses.replace(base, **changes)


def mcp_container(sts: dict[str, Any]) -> dict[str, Any]:
    containers = sts["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "mcp")


def test_stdio_statefulset_has_an_attachable_mcp_container() -> None:
    sts = build_statefulset(
        make_spec(
            args=("--local-timezone", "UTC"),
            env=(("A", "1"),),
            secret_env=(SecretEnv(env_name="TOKEN", secret_name="creds", key="token"),),
            resources={"limits": {"cpu": "1"}, "requests": {"memory": "64Mi"}},
            service_account="time-sa",
        )
    )
    assert sts["apiVersion"] == "apps/v1"
    assert sts["kind"] == "StatefulSet"
    assert sts["metadata"] == {
        "name": "time",
        "namespace": "ns",
        "labels": LABELS,
        "ownerReferences": [
            {
                "apiVersion": "moorage.dev/v1alpha1",
                "kind": "MCPServer",
                "name": "time",
                "uid": "u-1",
                "controller": True,
            }
        ],
    }
    assert sts["spec"]["replicas"] == 1
    assert sts["spec"]["selector"] == {"matchLabels": SELECTOR}
    assert sts["spec"]["serviceName"] == "mcp-time-headless"
    assert sts["spec"]["template"]["metadata"]["labels"] == LABELS
    assert sts["spec"]["template"]["spec"]["serviceAccountName"] == "time-sa"
    assert mcp_container(sts) == {
        "name": "mcp",
        "image": "ghcr.io/x/time:1",
        "args": ["--local-timezone", "UTC"],
        "env": [
            {"name": "A", "value": "1"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        ],
        "resources": {"limits": {"cpu": "1"}, "requests": {"memory": "64Mi"}},
        "securityContext": RESTRICTED_CONTAINER,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "stdin": True,
        "stdinOnce": False,
        "tty": False,
    }


def test_the_pod_has_restricted_defaults_and_a_writable_tmp() -> None:
    pod_spec = build_statefulset(make_spec())["spec"]["template"]["spec"]
    assert pod_spec["securityContext"] == RESTRICTED_POD
    assert pod_spec["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    assert mcp_container({"spec": {"template": {"spec": pod_spec}}})["securityContext"] == (
        RESTRICTED_CONTAINER
    )


def test_an_image_that_must_run_as_root_opts_out_through_the_pod_template() -> None:
    opt_out = {"spec": {"securityContext": {"runAsNonRoot": False, "runAsUser": 0}}}
    spec = make_spec(pod_template_spec=opt_out)
    pod_spec = build_statefulset(spec)["spec"]["template"]["spec"]
    assert pod_spec["securityContext"] == {
        "runAsNonRoot": False,
        "runAsUser": 0,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # Root is within Pod Security baseline: the rules need no MCPTenant for it (the namespace's
    # own level decides), and the container's other defaults stay.
    assert check_pod_security(pod_security_subject(spec), allowances=NO_ALLOWANCES) == []
    assert mcp_container(build_statefulset(spec))["securityContext"] == RESTRICTED_CONTAINER


def test_a_privileged_mcp_container_gets_no_contradictory_escalation_default() -> None:
    privileged = {
        "spec": {"containers": [{"name": "mcp", "securityContext": {"privileged": True}}]}
    }
    container = mcp_container(build_statefulset(make_spec(pod_template_spec=privileged)))
    # The apiserver refuses `privileged: true` with `allowPrivilegeEscalation: false`.
    assert container["securityContext"] == {"privileged": True, "capabilities": {"drop": ["ALL"]}}


def test_an_opt_out_beyond_baseline_still_needs_an_mcptenant() -> None:
    escalate = {
        "spec": {
            "containers": [{"name": "mcp", "securityContext": {"allowPrivilegeEscalation": True}}]
        }
    }
    [refusal] = check_pod_security(
        pod_security_subject(make_spec(pod_template_spec=escalate)), allowances=NO_ALLOWANCES
    )
    assert refusal.path == (
        "spec.podTemplateSpec.spec.containers[0].securityContext.allowPrivilegeEscalation"
    )


def test_http_statefulset_exposes_the_target_port_and_manages_backend_replicas() -> None:
    sts = build_statefulset(
        make_spec(transport="streamable-http", target_port=9000, backend_replicas=3)
    )
    assert sts["spec"]["replicas"] == 3
    container = mcp_container(sts)
    assert container["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]
    assert "stdin" not in container


def test_http_statefulset_leaves_replicas_unmanaged_when_unset() -> None:
    sts = build_statefulset(make_spec(transport="sse"))
    assert "replicas" not in sts["spec"]


def test_stdio_is_one_replica_whatever_backend_replicas_says() -> None:
    assert build_statefulset(make_spec(backend_replicas=4))["spec"]["replicas"] == 1


def test_pod_template_spec_is_applied_first_and_moorage_settings_on_top() -> None:
    template = {
        "metadata": {
            "labels": {"team": "a", "moorage.dev/mcpserver": "hijack"},
            "annotations": {"note": "x"},
        },
        "spec": {
            "serviceAccountName": "custom",
            "nodeSelector": {"disk": "ssd"},
            "containers": [
                {
                    "name": "mcp",
                    "image": "evil:latest",
                    "tty": True,
                    "env": [
                        {"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "x"}}},
                        {"name": "KEEP", "value": "k"},
                        {"name": "TOKEN", "value": "plain"},
                    ],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                },
                {"name": "sidecar", "image": "side:1"},
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    }
    sts = build_statefulset(
        make_spec(
            pod_template_spec=template,
            service_account="time-sa",
            env=(("A", "1"),),
            secret_env=(SecretEnv(env_name="TOKEN", secret_name="creds", key="t"),),
        )
    )
    pod = sts["spec"]["template"]
    assert pod["metadata"]["labels"] == {**LABELS, "team": "a"}
    assert pod["metadata"]["annotations"] == {"note": "x"}
    assert pod["spec"]["serviceAccountName"] == "custom"
    assert pod["spec"]["nodeSelector"] == {"disk": "ssd"}
    assert [c["name"] for c in pod["spec"]["containers"]] == ["mcp", "sidecar"]
    mcp = mcp_container(sts)
    assert mcp["image"] == "ghcr.io/x/time:1"
    assert (mcp["stdin"], mcp["stdinOnce"], mcp["tty"]) == (True, False, False)
    assert mcp["env"] == [
        {"name": "A", "value": "1"},
        {"name": "KEEP", "value": "k"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "t"}}},
    ]
    assert mcp["volumeMounts"] == [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "data", "mountPath": "/data"},
    ]
    # The template itself is not modified.
    assert template["spec"]["containers"][0]["image"] == "evil:latest"


def test_pod_patch_is_merged_after_the_template_and_before_moorage_settings() -> None:
    sts = build_statefulset(
        make_spec(pod_template_spec={"spec": {"nodeSelector": {"a": "1"}, "priority": 1}}),
        pod_patch={
            "spec": {
                "nodeSelector": {"b": "2"},
                "containers": [{"name": "mcp", "image": "patched", "workingDir": "/w"}],
            }
        },
    )
    pod = sts["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"a": "1", "b": "2"}
    assert pod["priority"] == 1
    assert mcp_container(sts)["image"] == "ghcr.io/x/time:1"
    assert mcp_container(sts)["workingDir"] == "/w"


def test_headless_service_only_for_http_transports() -> None:
    assert build_headless_service(make_spec()) is None
    svc = build_headless_service(make_spec(transport="streamable-http", target_port=9000))
    assert svc is not None
    assert svc["metadata"]["name"] == "mcp-time-headless"
    assert svc["metadata"]["labels"] == LABELS
    assert svc["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert svc["spec"] == {
        "clusterIP": "None",
        "selector": SELECTOR,
        "ports": [{"name": "http", "port": 9000, "targetPort": 9000, "protocol": "TCP"}],
    }


@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
def test_http_servers_get_the_incumbents_clusterip_service_with_client_ip_affinity(
    transport: Any,
) -> None:
    svc = build_mcp_service(make_spec(transport=transport, target_port=9000))
    assert svc is not None
    assert svc["metadata"]["name"] == "mcp-time"
    assert svc["metadata"]["labels"] == LABELS
    assert svc["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert svc["spec"] == {
        "type": "ClusterIP",
        "selector": SELECTOR,
        "sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 1800}},
        "ports": [{"name": "http", "port": 9000, "targetPort": 9000, "protocol": "TCP"}],
    }
    assert desired_workload(make_spec(transport=transport)).mcp_service is not None


def test_a_stdio_server_has_no_clusterip_service() -> None:
    assert build_mcp_service(make_spec()) is None
    assert desired_workload(make_spec()).mcp_service is None


def test_labels_carry_the_incumbents_app_label_but_selectors_stay_as_they_were() -> None:
    sts = build_statefulset(make_spec())
    assert sts["spec"]["template"]["metadata"]["labels"]["app"] == "mcpserver"
    # Selectors of existing StatefulSets are immutable: a new label there would break upgrades.
    assert sts["spec"]["selector"] == {"matchLabels": SELECTOR}


@pytest.mark.parametrize(
    ("egress", "rules"),
    [
        pytest.param(EgressRules(), [], id="deny-all"),
        pytest.param(EgressRules(allow_all=True, ports=(1,)), [{}], id="allow-all"),
        pytest.param(
            EgressRules(ports=(443,)),
            [{"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "UDP", "port": 443}]}],
            id="ports",
        ),
        pytest.param(
            EgressRules(cidrs=("10.0.0.0/8", "192.168.1.0/24")),
            [
                {
                    "to": [
                        {"ipBlock": {"cidr": "10.0.0.0/8"}},
                        {"ipBlock": {"cidr": "192.168.1.0/24"}},
                    ]
                }
            ],
            id="cidrs",
        ),
        pytest.param(
            EgressRules(ports=(53,), cidrs=("10.0.0.0/8",)),
            [
                {"ports": [{"protocol": "TCP", "port": 53}, {"protocol": "UDP", "port": 53}]},
                {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
            ],
            id="ports-anywhere-and-cidrs-on-any-port",
        ),
    ],
)
def test_network_policy_turns_egress_rules_into_policy_rules(
    egress: EgressRules, rules: list[dict[str, Any]]
) -> None:
    policy = build_network_policy(make_spec(), egress=egress)
    assert policy is not None
    assert policy["metadata"]["name"] == "time-egress"
    assert policy["metadata"]["labels"] == LABELS
    assert policy["spec"] == {
        "podSelector": {"matchLabels": SELECTOR},
        "policyTypes": ["Egress"],
        "egress": rules,
    }


def test_no_network_policy_without_restriction() -> None:
    assert build_network_policy(make_spec(), egress=None) is None


def _profile(type_: str, name: str, **kw: Any) -> RunConfigPermissionProfile:
    return RunConfigPermissionProfile.model_validate({"type": type_, "name": name, **kw})


@pytest.mark.parametrize(
    ("profile", "document", "expected"),
    [
        pytest.param(None, None, None, id="no-profile"),
        pytest.param(_profile("builtin", "network"), None, None, id="network"),
        pytest.param(_profile("builtin", "none"), None, EgressRules(), id="none"),
        pytest.param(
            _profile("configMap", "p", outbound={"allow_port": [443]}),
            None,
            EgressRules(ports=(443,)),
            id="resolved-in-runconfig",
        ),
        pytest.param(
            _profile("configMap", "p", outbound={"allow_port": [443]}),
            OutboundNetwork(allow_port=[80]),
            EgressRules(ports=(443,)),
            id="runconfig-wins-over-document",
        ),
        pytest.param(
            _profile("configMap", "p"),
            OutboundNetwork(allow_cidr=["10.0.0.0/8"]),
            EgressRules(cidrs=("10.0.0.0/8",)),
            id="from-document",
        ),
    ],
)
def test_computes_egress_for_profiles(
    profile: RunConfigPermissionProfile | None,
    document: OutboundNetwork | None,
    expected: EgressRules | None,
) -> None:
    assert compute_egress(profile, document=document) == expected


def test_an_unread_configmap_profile_is_an_error() -> None:
    with pytest.raises(
        ProfileError, match=re.escape("ConfigMap 'p' (key 'profile.json') has not been read")
    ):
        compute_egress(_profile("configMap", "p"))


def test_unknown_builtin_profile_is_an_error() -> None:
    profile = RunConfigPermissionProfile.model_construct(type="builtin", name="open")
    with pytest.raises(ProfileError, match="unknown builtin permission profile 'open'"):
        compute_egress(profile)


@pytest.mark.parametrize(
    ("profile", "needed", "key"),
    [
        pytest.param(_profile("configMap", "p"), True, "profile.json", id="unresolved"),
        pytest.param(_profile("configMap", "p", key="k.json"), True, "k.json", id="own-key"),
        pytest.param(_profile("configMap", "p", outbound={}), False, "profile.json", id="resolved"),
        pytest.param(_profile("builtin", "none"), False, "profile.json", id="builtin"),
    ],
)
def test_knows_when_the_profile_configmap_must_be_read(
    profile: RunConfigPermissionProfile, needed: bool, key: str
) -> None:
    assert needs_profile_document(profile) is needed
    assert profile_document_key(profile) == key


def test_desired_workload_for_stdio_with_profile_none() -> None:
    desired = desired_workload(make_spec(), egress=compute_egress(_profile("builtin", "none")))
    assert desired.service is None
    assert desired.network_policy is not None
    assert desired.network_policy["spec"]["egress"] == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("{}", EgressRules(), id="empty-denies-all"),
        pytest.param('{"read": ["/x"]}', EgressRules(), id="other-permissions-ignored"),
        pytest.param(
            '{"network": {"outbound": {"allow_port": [443, 53, 443], "allow_cidr": ["10.1.2.3/8"]}}}',
            EgressRules(ports=(443, 53), cidrs=("10.0.0.0/8",)),
            id="ports-and-cidrs",
        ),
        pytest.param(
            '{"network": {"outbound": {"allow_cidr": ["fd00::/8", "1.2.3.4"]}}}',
            EgressRules(cidrs=("fd00::/8", "1.2.3.4/32")),
            id="ipv6-and-host",
        ),
        pytest.param(
            '{"network": {"outbound": {"insecure_allow_all": true}}}',
            EgressRules(allow_all=True),
            id="allow-all",
        ),
        pytest.param(
            '{"network": {"outbound": {"allow_host": ["example.com"], "allow_port": [443]}}}',
            EgressRules(ports=(443,), ignored=("network.outbound.allow_host",)),
            id="hosts-reported",
        ),
    ],
)
def test_turns_profile_documents_into_egress_rules(text: str, expected: EgressRules) -> None:
    outbound = parse_permission_profile(text).network.outbound
    assert egress_from_outbound(outbound, source="p") == expected


@pytest.mark.parametrize("cidr", ["10.0.0.0/33", "ten", "", "1.2.3.4/-1"])
def test_rejects_profiles_with_unusable_cidrs(cidr: str) -> None:
    with pytest.raises(ProfileError, match="is not a CIDR"):
        egress_from_outbound(OutboundNetwork(allow_cidr=[cidr]), source="p")


@given(
    st.lists(st.integers(1, 65535), max_size=4),
    st.lists(st.text(max_size=18), max_size=3),
    st.booleans(),
)
def test_egress_from_any_outbound_fails_only_with_a_profile_error_and_builds_valid_rules(
    ports: list[int], cidrs: list[str], allow_all: bool
) -> None:
    outbound = OutboundNetwork(allow_port=ports, allow_cidr=cidrs, insecure_allow_all=allow_all)
    try:
        rules = egress_from_outbound(outbound, source="p")
    except ProfileError:
        return
    policy = build_network_policy(make_spec(), egress=rules)
    assert policy is not None
    for rule in policy["spec"]["egress"]:
        for port in rule.get("ports", []):
            assert 1 <= port["port"] <= 65535
        for peer in rule.get("to", []):
            assert "/" in peer["ipBlock"]["cidr"]


RUNCONFIG = {
    "schema_version": "moorage/v1",
    "name": "time",
    "namespace": "ns",
    "owner": {
        "apiVersion": "moorage.dev/v1alpha1",
        "kind": "MCPServer",
        "name": "time",
        "uid": "u-1",
    },
    "image": "ghcr.io/x/time:1",
    "args": ["--a"],
    "env": [{"name": "A", "value": "1"}],
    "secret_env": [{"name": "TOKEN", "secret_key_ref": {"name": "creds", "key": "t"}}],
    "transport": "streamable-http",
    "target_port": 9000,
    "resources": {"limits": {"cpu": "1"}},
    "service_account": "time-sa",
    "backend_replicas": 2,
    "pod_template_spec": {"spec": {"nodeSelector": {"a": "b"}}},
    "permission_profile": {"type": "builtin", "name": "none"},
}


def test_reads_the_workload_out_of_a_runconfig() -> None:
    spec = workload_spec_from_runconfig(load_runconfig(json.dumps(RUNCONFIG)))
    assert spec == WorkloadSpec(
        name="time",
        namespace="ns",
        owner=OWNER,
        image="ghcr.io/x/time:1",
        transport="streamable-http",
        target_port=9000,
        args=("--a",),
        env=(("A", "1"),),
        secret_env=(SecretEnv(env_name="TOKEN", secret_name="creds", key="t"),),
        resources={"limits": {"cpu": "1"}},
        service_account="time-sa",
        pod_template_spec={"spec": {"nodeSelector": {"a": "b"}}},
        backend_replicas=2,
        permission_profile=_profile("builtin", "none"),
    )


def test_a_runconfig_without_owner_gives_objects_without_owner_references() -> None:
    rc = load_runconfig(json.dumps({**RUNCONFIG, "owner": None}))
    sts = build_statefulset(workload_spec_from_runconfig(rc))
    assert "ownerReferences" not in sts["metadata"]


def test_a_runconfig_with_an_unusable_pod_template_is_rejected() -> None:
    rc = load_runconfig(json.dumps({**RUNCONFIG, "pod_template_spec": {"kind": "Pod"}}))
    with pytest.raises(
        PodPatchError, match=r"^pod_template_spec: 'kind' is not a pod template field"
    ):
        workload_spec_from_runconfig(rc)


# -- drift and readiness ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("desired", "live", "expected"),
    [
        pytest.param({"a": 1}, {"a": 1, "b": 2}, True, id="extra-live-fields"),
        pytest.param({"a": 1}, {"a": 2}, False, id="changed"),
        pytest.param({"a": 1}, {}, False, id="missing"),
        pytest.param([{"n": 1}], [{"n": 1, "d": 0}, {"n": 2}], True, id="list-prefix"),
        pytest.param([{"n": 1}, {"n": 2}], [{"n": 1}], False, id="list-shorter"),
        pytest.param({"a": [1]}, {"a": {"0": 1}}, False, id="type-change"),
        pytest.param(
            {"f": False, "z": 0, "s": "", "l": [], "m": {}}, {}, True, id="zero-values-omitted"
        ),
        pytest.param({"f": True}, {}, False, id="true-missing"),
        pytest.param({"f": False}, {"f": True}, False, id="false-changed"),
    ],
)
def test_is_subset(desired: Any, live: Any, expected: bool) -> None:
    assert is_subset(desired, live) is expected


def _live(obj: dict[str, Any]) -> dict[str, Any]:
    """What the apiserver would return: defaults added, managed fields, status."""
    live = json.loads(json.dumps(obj))
    live["metadata"].update(
        resourceVersion="5",
        uid="x",
        generation=1,
        labels={**live["metadata"]["labels"], "extra": "1"},
    )
    container = live["spec"]["template"]["spec"]["containers"][0]
    container.update(terminationMessagePath="/dev/termination-log", imagePullPolicy="IfNotPresent")
    # The apiserver omits false booleans.
    del container["stdinOnce"], container["tty"]
    live["spec"]["revisionHistoryLimit"] = 10
    live["status"] = {"replicas": 1}
    return live


def test_a_defaulted_live_object_has_not_drifted() -> None:
    desired = build_statefulset(make_spec())
    assert not has_drifted(desired, _live(desired))


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(
            lambda o: o["metadata"]["labels"].pop("moorage.dev/mcpserver"), id="label-removed"
        ),
        pytest.param(lambda o: o["metadata"].pop("ownerReferences"), id="owner-removed"),
        pytest.param(
            lambda o: o["spec"]["template"]["spec"]["containers"][0].update(image="other"),
            id="image-changed",
        ),
        pytest.param(
            lambda o: o["spec"]["template"]["spec"]["containers"][0].pop("stdin"),
            id="stdin-removed",
        ),
        pytest.param(lambda o: o["spec"].update(replicas=0), id="scaled"),
        pytest.param(
            lambda o: o["metadata"].update(deletionTimestamp="2025-01-01T00:00:00Z"), id="deleting"
        ),
    ],
)
def test_edits_of_what_we_apply_are_drift(edit: Any) -> None:
    desired = build_statefulset(make_spec())
    live = _live(desired)
    edit(live)
    assert has_drifted(desired, live)


def _sts(*, generation: int, observed: int, replicas: int | None, ready: int) -> dict[str, Any]:
    spec = {} if replicas is None else {"replicas": replicas}
    return {
        "metadata": {"generation": generation},
        "spec": spec,
        "status": {"observedGeneration": observed, "readyReplicas": ready},
    }


@pytest.mark.parametrize(
    ("sts", "ready"),
    [
        pytest.param(_sts(generation=1, observed=1, replicas=1, ready=1), True, id="ready"),
        pytest.param(_sts(generation=2, observed=1, replicas=1, ready=1), False, id="stale-status"),
        pytest.param(_sts(generation=1, observed=1, replicas=1, ready=0), False, id="no-ready-pod"),
        pytest.param(_sts(generation=1, observed=1, replicas=3, ready=1), True, id="one-of-three"),
        pytest.param(
            _sts(generation=1, observed=1, replicas=None, ready=0), False, id="default-one"
        ),
        pytest.param(
            _sts(generation=1, observed=1, replicas=0, ready=0), True, id="scaled-to-zero"
        ),
        pytest.param({"metadata": {"generation": 1}}, False, id="no-status"),
    ],
)
def test_statefulset_readiness(sts: dict[str, Any], ready: bool) -> None:
    assert is_statefulset_ready(sts) is ready


def _pod(
    name: str,
    *,
    ready: bool = True,
    phase: str = "Running",
    deleting: bool = False,
    conditions: list[dict[str, Any]] | None = None,
    container_statuses: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    conds = conditions if conditions is not None else [{"type": "Ready", "status": str(ready)}]
    status: dict[str, Any] = {"phase": phase, "conditions": conds}
    if container_statuses is not None:
        status["containerStatuses"] = container_statuses
    return {"metadata": meta, "status": status}


def test_ready_pods_are_ready_running_not_terminating_and_ordered_by_ordinal() -> None:
    pods = [
        _pod("time-10"),
        _pod("time-2"),
        _pod("time-0", ready=False),
        _pod("time-1", deleting=True),
        _pod("time-3", phase="Pending"),
    ]
    assert [p["metadata"]["name"] for p in ready_pods(pods)] == ["time-2", "time-10"]


def test_describes_why_pods_are_not_ready() -> None:
    pods = [
        _pod(
            "time-0",
            phase="Pending",
            conditions=[
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
                }
            ],
        ),
        _pod(
            "time-1",
            ready=False,
            container_statuses=[
                {
                    "name": "mcp",
                    "state": {
                        "waiting": {"reason": "ImagePullBackOff", "message": "no such image"}
                    },
                }
            ],
        ),
        _pod(
            "time-2",
            ready=False,
            container_statuses=[{"name": "mcp", "state": {"terminated": {"exitCode": 2}}}],
        ),
        _pod("time-3", ready=False),
        _pod("time-4"),
        _pod("time-5", deleting=True),
    ]
    assert describe_pod_problems(pods) == [
        "pod time-0: not scheduled: 0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
        "pod time-1: container mcp waiting (ImagePullBackOff): no such image",
        "pod time-2: container mcp terminated (exit 2)",
        "pod time-3: phase Running, not ready",
        "pod time-5: terminating",
    ]


def test_describes_a_missing_pod() -> None:
    assert describe_pod_problems([]) == [
        "no pod of the StatefulSet exists (see its events: quota, admission, ...)"
    ]


def test_label_selector_query() -> None:
    assert (
        build_label_selector("time")
        == "app.kubernetes.io/component=mcp-server,moorage.dev/mcpserver=time"
    )


def test_backend_urls_name_each_pod_under_the_headless_service() -> None:
    spec = make_spec(transport="streamable-http", target_port=9000)
    assert build_backend_urls(spec, replicas=2) == [
        "http://time-0.mcp-time-headless.ns.svc.cluster.local:9000/mcp",
        "http://time-1.mcp-time-headless.ns.svc.cluster.local:9000/mcp",
    ]
    sse = make_spec(transport="sse")
    assert build_backend_urls(sse, replicas=1, cluster_domain="k8s.internal") == [
        "http://time-0.mcp-time-headless.ns.svc.k8s.internal:8080/sse"
    ]
    assert build_backend_urls(spec, replicas=0) == []


def test_stdio_has_no_backend_urls() -> None:
    with pytest.raises(ValueError, match="no HTTP endpoint"):
        build_backend_urls(make_spec(), replicas=1)


# -- pod security of the pod the StatefulSet would run ------------------------------------------


def _refused_paths(spec: WorkloadSpec, *, pod_patch: dict[str, Any] | None = None) -> list[str]:
    subject = pod_security_subject(spec, pod_patch=pod_patch)
    return [r.path for r in check_pod_security(subject, allowances=NO_ALLOWANCES)]


def test_the_default_pod_with_its_own_account_and_declared_secrets_passes() -> None:
    spec = make_spec(
        service_account="time-sa",
        secret_env=(SecretEnv(env_name="TOKEN", secret_name="api", key="token"),),
    )
    assert _refused_paths(spec) == []


def test_a_runconfig_edited_to_a_privileged_host_network_pod_is_refused() -> None:
    template = {
        "spec": {
            "hostNetwork": True,
            "containers": [{"name": "mcp", "securityContext": {"privileged": True}}],
        }
    }
    assert _refused_paths(make_spec(pod_template_spec=template)) == [
        "spec.podTemplateSpec.spec.hostNetwork",
        "spec.podTemplateSpec.spec.containers[0].securityContext.privileged",
    ]


def test_another_service_account_in_the_runconfig_is_refused() -> None:
    assert _refused_paths(make_spec(service_account="cluster-admin")) == [
        "spec.podTemplateSpec.spec.serviceAccountName"
    ]


def test_the_pod_patch_is_judged_with_the_template() -> None:
    patch = {"spec": {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}}
    assert _refused_paths(make_spec(), pod_patch=patch) == [
        "spec.podTemplateSpec.spec.volumes[0].hostPath.path"
    ]


@pytest.mark.parametrize(
    ("transport", "era", "annotations"),
    [
        pytest.param("stdio", "handshake", None, id="stdio-default"),
        pytest.param("stdio", "auto", {"moorage.dev/stdio-era": "auto"}, id="stdio-auto"),
        pytest.param("streamable-http", "handshake", None, id="http"),
    ],
)
def test_only_a_stdio_server_off_the_default_era_marks_its_pod_template(
    transport: str, era: str, annotations: dict[str, str] | None
) -> None:
    # A process locks to its first era: a change of era must change the template, so the
    # StatefulSet replaces the pod; the default leaves existing templates as they were.
    template = build_statefulset(make_spec(transport=transport, stdio_era=era))["spec"]["template"]
    assert template["metadata"].get("annotations") == annotations


def test_the_runconfig_era_reaches_the_workload() -> None:
    rc = load_runconfig(json.dumps({**RUNCONFIG, "stdio_era": "auto"}))
    assert workload_spec_from_runconfig(rc).stdio_era == "auto"
