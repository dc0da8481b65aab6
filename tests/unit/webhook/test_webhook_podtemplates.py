"""podTemplateSpec: the PodTemplateSpec type checker and the pod-template rules."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moorage_webhook.validation.podtemplates import (
    MEMO_MAX_TEXT,
    _findings_of,
    check_pod_template_spec,
)
from moorage_webhook.validation.verdict import Findings

BASE = "spec.podTemplateSpec"


def _check(template: object) -> Findings:
    out = Findings()
    check_pod_template_spec(template, BASE, out)
    return out


def _spec(**fields: Any) -> dict[str, Any]:
    return {"spec": fields}


def test_a_realistic_template_passes() -> None:
    template = {
        "metadata": {
            "labels": {"team": "a", "example.com/tier": "mcp"},
            "annotations": {"example.com/owner": "team a"},
            "creationTimestamp": None,
        },
        "spec": {
            "containers": [
                {
                    "name": "mcp",
                    "env": [
                        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                    ],
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                    "resources": {"limits": {"cpu": 2, "memory": "1Gi"}, "requests": {"cpu": 0.5}},
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65534,
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}},
                    "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 10},
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                },
                {
                    "name": "log-shipper",
                    "image": "fluent/fluent-bit:3.0",
                    "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
                },
            ],
            "initContainers": [
                {"name": "warm", "image": "busybox:1.36", "command": ["true"]},
                {"name": "proxy", "image": "envoy:1.30", "restartPolicy": "Always"},
            ],
            "volumes": [
                {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "a"}]}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "cache"},
            ],
            "tolerations": [
                {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"},
                {"operator": "Exists"},
                {"key": "k", "value": "v", "effect": "NoExecute", "tolerationSeconds": 30},
            ],
            "nodeSelector": {"kubernetes.io/arch": "amd64"},
            "affinity": {
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}
            },
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": {"a": "b"}},
                }
            ],
            "securityContext": {"fsGroup": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
            "priorityClassName": "high",
            "terminationGracePeriodSeconds": 30,
            "imagePullSecrets": [{"name": "ghcr"}],
            "dnsPolicy": "ClusterFirst",
            "restartPolicy": "Always",
        },
    }
    out = _check(template)
    assert out.errors == []
    assert out.warnings == []


@pytest.mark.parametrize(
    ("template", "path", "fragment"),
    [
        pytest.param("pod", BASE, "must be an object, not a string", id="not-an-object"),
        pytest.param({"spek": {}}, f"{BASE}.spek", 'did you mean "spec"', id="unknown-top-level"),
        pytest.param(
            {"metadata": {"labels": {"a": 1}}},
            f"{BASE}.metadata.labels[a]",
            "must be a string, not a number",
            id="label-value-type",
        ),
        pytest.param(
            {"metadata": {"labels": {"a": None}}},
            f"{BASE}.metadata.labels[a]",
            "must be a string, not null",
            id="label-value-null",
        ),
        pytest.param(
            {"metadata": {"labels": {"a b": "c"}}},
            f"{BASE}.metadata.labels[a b]",
            "is not a valid key",
            id="label-key",
        ),
        pytest.param(
            {"metadata": {"labels": {"a": "-x"}}},
            f"{BASE}.metadata.labels[a]",
            'label value "-x"',
            id="label-value",
        ),
        pytest.param(
            {"metadata": {"annotations": {"x/y/z": "v"}}},
            f"{BASE}.metadata.annotations[x/y/z]",
            "prefix",
            id="annotation-key",
        ),
        pytest.param(
            {"metadata": {"name": "mine"}},
            f"{BASE}.metadata.name",
            "only 'labels' and 'annotations' may be set in a pod template's metadata",
            id="metadata-name",
        ),
        pytest.param(
            {"metadata": {"finalizers": ["example.com/keep"]}},
            f"{BASE}.metadata.finalizers",
            "only 'labels' and 'annotations' may be set in a pod template's metadata",
            id="metadata-finalizers",
        ),
        pytest.param(
            _spec(containers=[{"image": "x"}]),
            f"{BASE}.spec.containers[0].name",
            "required field is missing",
            id="container-name-missing",
        ),
        pytest.param(
            _spec(containers=[{"name": None}]),
            f"{BASE}.spec.containers[0].name",
            "required, must be a string",
            id="container-name-null",
        ),
        pytest.param(
            _spec(containers=[{"name": "Side_car", "image": "x"}]),
            f"{BASE}.spec.containers[0].name",
            "must be a DNS label",
            id="container-name-syntax",
        ),
        pytest.param(
            _spec(containers=[{"name": "mcp"}, {"name": "mcp"}]),
            f"{BASE}.spec.containers[1].name",
            'container name "mcp" is used twice',
            id="container-name-twice",
        ),
        pytest.param(
            _spec(containers=[{"name": "sidecar"}]),
            f"{BASE}.spec.containers[0].image",
            'only container "mcp" takes its image from spec.image',
            id="sidecar-without-image",
        ),
        pytest.param(
            _spec(initContainers=[{"name": "mcp"}]),
            f"{BASE}.spec.initContainers[0].image",
            "required",
            id="init-container-without-image",
        ),
        pytest.param(
            _spec(containers=[{"name": "mcp", "restartPolicy": "Always"}]),
            f"{BASE}.spec.containers[0].restartPolicy",
            "unknown field",
            id="restart-policy-on-a-regular-container",
        ),
        pytest.param(
            _spec(containers=[{"name": "mcp", "stdin": "yes"}]),
            f"{BASE}.spec.containers[0].stdin",
            "must be a boolean, not a string",
            id="bool-type",
        ),
        pytest.param(
            _spec(containers=[{"name": "mcp", "args": ["a", 1]}]),
            f"{BASE}.spec.containers[0].args[1]",
            "must be a string, not a number",
            id="list-item-type",
        ),
        pytest.param(
            _spec(containers=[{"name": "mcp", "imagePullPolicy": "Sometimes"}]),
            f"{BASE}.spec.containers[0].imagePullPolicy",
            '"Sometimes" is not one of Always, Never, IfNotPresent',
            id="enum",
        ),
        pytest.param(
            _spec(containers=[{"name": "mcp", "env": [{"value": "x"}]}]),
            f"{BASE}.spec.containers[0].env[0].name",
            "required field is missing",
            id="env-name-missing",
        ),
        pytest.param(
            _spec(containers=[{"name": "mcp", "env": [{"name": "1X"}]}]),
            f"{BASE}.spec.containers[0].env[0].name",
            "not a valid environment variable name",
            id="env-name-syntax",
        ),
        pytest.param(
            _spec(
                containers=[
                    {
                        "name": "mcp",
                        "env": [
                            {
                                "name": "X",
                                "value": "v",
                                "valueFrom": {"fieldRef": {"fieldPath": "x"}},
                            }
                        ],
                    }
                ]
            ),
            f"{BASE}.spec.containers[0].env[0].valueFrom",
            "may not be set when value is not empty",
            id="env-value-and-value-from",
        ),
        pytest.param(
            _spec(containers=[{"name": "mcp", "env": [{"name": "X", "valueFrom": {}}]}]),
            f"{BASE}.spec.containers[0].env[0].valueFrom",
            "set one of configMapKeyRef",
            id="env-value-from-empty",
        ),
        pytest.param(
            _spec(
                containers=[
                    {
                        "name": "mcp",
                        "env": [
                            {
                                "name": "X",
                                "valueFrom": {"secretKeyRef": {"name": "s", "key": "a b"}},
                            }
                        ],
                    }
                ]
            ),
            f"{BASE}.spec.containers[0].env[0].valueFrom.secretKeyRef.key",
            "is not a valid key",
            id="secret-key-syntax",
        ),
        pytest.param(
            _spec(containers=[{"name": "mcp", "ports": [{"containerPort": 70000}]}]),
            f"{BASE}.spec.containers[0].ports[0].containerPort",
            "70000 is out of range (1 to 65535)",
            id="port-range",
        ),
        pytest.param(
            _spec(containers=[{"name": "mcp", "ports": [{"containerPort": "80"}]}]),
            f"{BASE}.spec.containers[0].ports[0].containerPort",
            "must be an integer, not a string",
            id="port-type",
        ),
        pytest.param(
            _spec(containers=[{"name": "mcp", "ports": [{"containerPort": 80.5}]}]),
            f"{BASE}.spec.containers[0].ports[0].containerPort",
            "must be an integer, not a number",
            id="port-float",
        ),
        pytest.param(
            _spec(
                containers=[
                    {
                        "name": "mcp",
                        "ports": [
                            {"name": "http", "containerPort": 80},
                            {"name": "http", "containerPort": 81},
                        ],
                    }
                ]
            ),
            f"{BASE}.spec.containers[0].ports[1].name",
            'port name "http" is used twice',
            id="port-name-twice",
        ),
        pytest.param(
            _spec(containers=[{"name": "mcp", "ports": [{"name": "x" * 16, "containerPort": 1}]}]),
            f"{BASE}.spec.containers[0].ports[0].name",
            "at most 15 characters",
            id="port-name-length",
        ),
        pytest.param(
            _spec(containers=[{"name": "mcp", "resources": {"limits": {"cpu": "lots"}}}]),
            f"{BASE}.spec.containers[0].resources.limits[cpu]",
            '"lots" is not a quantity',
            id="quantity",
        ),
        pytest.param(
            _spec(
                containers=[
                    {
                        "name": "mcp",
                        "resources": {"limits": {"memory": "1Gi"}, "requests": {"memory": "2Gi"}},
                    }
                ]
            ),
            f"{BASE}.spec.containers[0].resources.requests[memory]",
            "must be less than or equal to the limit 1Gi",
            id="request-over-limit",
        ),
        pytest.param(
            _spec(containers=[{"name": "mcp", "resources": {"requests": {"cpu": "-1"}}}]),
            f"{BASE}.spec.containers[0].resources.requests[cpu]",
            "must not be negative",
            id="negative-request",
        ),
        pytest.param(
            _spec(containers=[{"name": "mcp", "securityContext": {"runAsUser": -1}}]),
            f"{BASE}.spec.containers[0].securityContext.runAsUser",
            "out of range",
            id="run-as-user",
        ),
        pytest.param(
            _spec(
                containers=[
                    {
                        "name": "mcp",
                        "securityContext": {"privileged": True, "allowPrivilegeEscalation": False},
                    }
                ]
            ),
            f"{BASE}.spec.containers[0].securityContext.allowPrivilegeEscalation",
            "cannot be false when privileged is true",
            id="privileged-without-escalation",
        ),
        pytest.param(
            _spec(containers=[{"name": "mcp", "livenessProbe": {"periodSeconds": 5}}]),
            f"{BASE}.spec.containers[0].livenessProbe",
            "set one of exec, httpGet, tcpSocket, grpc",
            id="probe-without-handler",
        ),
        pytest.param(
            _spec(
                containers=[
                    {
                        "name": "mcp",
                        "readinessProbe": {
                            "exec": {"command": ["true"]},
                            "tcpSocket": {"port": 1},
                        },
                    }
                ]
            ),
            f"{BASE}.spec.containers[0].readinessProbe",
            "set only one of exec, tcpSocket",
            id="probe-two-handlers",
        ),
        pytest.param(
            _spec(
                containers=[
                    {
                        "name": "mcp",
                        "readinessProbe": {"httpGet": {"path": "/"}, "periodSeconds": 0},
                    }
                ]
            ),
            f"{BASE}.spec.containers[0].readinessProbe.httpGet.port",
            "required field is missing",
            id="probe-port-missing",
        ),
        pytest.param(
            _spec(
                containers=[
                    {"name": "mcp", "livenessProbe": {"exec": {"command": []}, "periodSeconds": 0}}
                ]
            ),
            f"{BASE}.spec.containers[0].livenessProbe.periodSeconds",
            "must be at least 1",
            id="probe-period",
        ),
        pytest.param(
            _spec(
                containers=[{"name": "mcp", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}]
            ),
            f"{BASE}.spec.containers[0].volumeMounts[0].name",
            'no volume named "nope"',
            id="mount-without-volume",
        ),
        pytest.param(
            _spec(
                containers=[
                    {
                        "name": "mcp",
                        "volumeMounts": [
                            {"name": "v", "mountPath": "/x"},
                            {"name": "v", "mountPath": "/x"},
                        ],
                    }
                ],
                volumes=[{"name": "v", "emptyDir": {}}],
            ),
            f"{BASE}.spec.containers[0].volumeMounts[1].mountPath",
            '"/x" is mounted twice',
            id="mount-path-twice",
        ),
        pytest.param(
            _spec(
                containers=[
                    {
                        "name": "mcp",
                        "volumeMounts": [{"name": "v", "mountPath": "/x", "subPath": "../etc"}],
                    }
                ],
                volumes=[{"name": "v", "emptyDir": {}}],
            ),
            f"{BASE}.spec.containers[0].volumeMounts[0].subPath",
            "relative path without '..'",
            id="sub-path-escape",
        ),
        pytest.param(
            _spec(volumes=[{"name": "v", "emptyDir": {}, "configMap": {"name": "c"}}]),
            f"{BASE}.spec.volumes[0]",
            "set only one of configMap, emptyDir",
            id="volume-two-sources",
        ),
        pytest.param(
            _spec(volumes=[{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]),
            f"{BASE}.spec.volumes[1].name",
            'volume name "v" is used twice',
            id="volume-name-twice",
        ),
        pytest.param(
            _spec(volumes=[{"name": "v", "persistentVolumeClaim": {}}]),
            f"{BASE}.spec.volumes[0].persistentVolumeClaim.claimName",
            "required field is missing",
            id="pvc-claim-missing",
        ),
        pytest.param(
            _spec(volumes=[{"name": "v", "configMap": {"defaultMode": 1000}}]),
            f"{BASE}.spec.volumes[0].configMap.defaultMode",
            "out of range (0 to 511)",
            id="volume-mode",
        ),
        pytest.param(
            _spec(volumes=[{"emptyDir": {}}]),
            f"{BASE}.spec.volumes[0].name",
            "required field is missing",
            id="volume-name-missing",
        ),
        pytest.param(
            _spec(tolerations=[{"key": "k", "operator": "Exists", "value": "v"}]),
            f"{BASE}.spec.tolerations[0].value",
            "must be empty when operator is Exists",
            id="toleration-exists-with-value",
        ),
        pytest.param(
            _spec(tolerations=[{"value": "v"}]),
            f"{BASE}.spec.tolerations[0].operator",
            "must be Exists when key is empty",
            id="toleration-no-key",
        ),
        pytest.param(
            _spec(tolerations=[{"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}]),
            f"{BASE}.spec.tolerations[0].tolerationSeconds",
            "only be set when effect is NoExecute",
            id="toleration-seconds",
        ),
        pytest.param(
            _spec(tolerations=[{"key": "k", "effect": "Sometimes"}]),
            f"{BASE}.spec.tolerations[0].effect",
            "is not one of",
            id="toleration-effect",
        ),
        pytest.param(
            _spec(nodeSelector={"disk": 1}),
            f"{BASE}.spec.nodeSelector[disk]",
            "must be a string",
            id="node-selector-type",
        ),
        pytest.param(
            _spec(nodeSelector={"disk": "fast ssd"}),
            f"{BASE}.spec.nodeSelector[disk]",
            'label value "fast ssd"',
            id="node-selector-value",
        ),
        pytest.param(
            _spec(affinity=["zone-a"]),
            f"{BASE}.spec.affinity",
            "must be an object, not a list",
            id="affinity-type",
        ),
        pytest.param(
            _spec(affinity={"nodeAfinity": {}}),
            f"{BASE}.spec.affinity.nodeAfinity",
            'did you mean "nodeAffinity"',
            id="affinity-typo",
        ),
        pytest.param(
            _spec(topologySpreadConstraints=[{"maxSkew": 1, "topologyKey": "zone"}]),
            f"{BASE}.spec.topologySpreadConstraints[0].whenUnsatisfiable",
            "required field is missing",
            id="spread-required",
        ),
        pytest.param(
            _spec(restartPolicy="Never"),
            f"{BASE}.spec.restartPolicy",
            "only takes Always",
            id="restart-policy",
        ),
        pytest.param(
            _spec(ephemeralContainers=[{"name": "debug"}]),
            f"{BASE}.spec.ephemeralContainers",
            "not allowed in a pod template",
            id="ephemeral-containers",
        ),
        pytest.param(
            _spec(serviceAccountName="Admin"),
            f"{BASE}.spec.serviceAccountName",
            "DNS-1123",
            id="service-account-name",
        ),
        pytest.param(
            _spec(imagePullSecrets=[{"name": "Bad_Name"}]),
            f"{BASE}.spec.imagePullSecrets[0].name",
            "DNS-1123",
            id="pull-secret-name",
        ),
        pytest.param(
            _spec(terminationGracePeriodSeconds=-5),
            f"{BASE}.spec.terminationGracePeriodSeconds",
            "out of range",
            id="grace-period",
        ),
        pytest.param(
            _spec(priority=2**31),
            f"{BASE}.spec.priority",
            "out of range",
            id="int32-range",
        ),
        pytest.param(
            _spec(os={"name": "plan9"}),
            f"{BASE}.spec.os.name",
            "is not one of linux, windows",
            id="os",
        ),
        pytest.param(
            _spec(securityContext={"sysctls": [{"name": "net.x"}]}),
            f"{BASE}.spec.securityContext.sysctls[0].value",
            "required field is missing",
            id="sysctl-value",
        ),
        pytest.param(
            _spec(dnsConfig={"nameservers": "1.1.1.1"}),
            f"{BASE}.spec.dnsConfig.nameservers",
            "must be a list",
            id="dns-config",
        ),
        pytest.param(
            _spec(hostAliases=[{"hostnames": ["a"]}]),
            f"{BASE}.spec.hostAliases[0].ip",
            "required field is missing",
            id="host-alias-ip",
        ),
        pytest.param(
            _spec(readinessGates=[{}]),
            f"{BASE}.spec.readinessGates[0].conditionType",
            "required field is missing",
            id="readiness-gate",
        ),
    ],
)
def test_reports_the_first_error_with_its_field_path(
    template: object, path: str, fragment: str
) -> None:
    out = _check(template)
    assert out.errors, "expected an error"
    first = out.errors[0]
    assert first.path == path, [str(e) for e in out.errors]
    assert fragment in first.message, str(first)


@pytest.mark.parametrize(
    ("template", "path", "fragment"),
    [
        pytest.param(
            _spec(containers=[{"name": "mcp", "image": "x:1"}]),
            f"{BASE}.spec.containers[0].image",
            "always runs spec.image",
            id="mcp-image",
        ),
        pytest.param(
            _spec(containers=[{"name": "mcp", "args": ["x"]}]),
            f"{BASE}.spec.containers[0].args",
            "always gets spec.args",
            id="mcp-args",
        ),
        pytest.param(
            {"metadata": {"labels": {"moorage.dev/mcpserver": "other"}}},
            f"{BASE}.metadata.labels[moorage.dev/mcpserver]",
            "its value wins",
            id="selector-label",
        ),
        pytest.param(
            _spec(nodeName="node-1"), f"{BASE}.spec.nodeName", "bypasses the scheduler", id="node"
        ),
        pytest.param(
            _spec(containers=[{"name": "mcp", "env": [{"name": "A"}, {"name": "A"}]}]),
            f"{BASE}.spec.containers[0].env[1].name",
            '"A" is set more than once',
            id="env-twice",
        ),
    ],
)
def test_warns_about_settings_that_are_legal_but_surprising(
    template: object, path: str, fragment: str
) -> None:
    out = _check(template)
    assert out.errors == [], [str(e) for e in out.errors]
    assert any(w.path == path and fragment in w.message for w in out.warnings), out.warnings


def test_every_error_in_a_template_is_reported_in_document_order() -> None:
    template = _spec(containers=[{"name": 1}, {"name": "b", "image": 2}], priority="high")
    paths = [e.path for e in _check(template).errors]
    assert paths == [
        f"{BASE}.spec.containers[0].name",
        f"{BASE}.spec.containers[1].image",
        f"{BASE}.spec.priority",
    ]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "spec",
                    "metadata",
                    "containers",
                    "name",
                    "image",
                    "env",
                    "ports",
                    "volumes",
                    "labels",
                    "resources",
                    "limits",
                    "requests",
                    "cpu",
                    "tolerations",
                    "value",
                    "x",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@given(_json)
@settings(max_examples=1500)
def test_any_json_value_is_checked_without_crashing(value: object) -> None:
    out = _check(value)
    for problem in out.errors:
        assert problem.path.startswith(BASE)
        assert problem.message


def test_findings_are_memoised_by_canonical_template_text() -> None:
    _findings_of.cache_clear()
    first = _spec(containers=[{"name": "mcp", "stdin": "yes"}], nodeName="n")
    reordered = {"spec": {"nodeName": "n", "containers": [{"stdin": "yes", "name": "mcp"}]}}
    assert _check(first).errors == _check(reordered).errors
    assert _check(first).warnings == _check(reordered).warnings
    info = _findings_of.cache_info()
    assert (info.misses, info.hits) == (1, 3)


def test_large_templates_are_checked_without_the_memo() -> None:
    _findings_of.cache_clear()
    big = _spec(containers=[{"name": "mcp", "args": ["x" * MEMO_MAX_TEXT], "tty": 1}])
    errors = _check(big).errors
    assert [e.path for e in errors] == [f"{BASE}.spec.containers[0].tty"]
    assert _findings_of.cache_info().currsize == 0


@pytest.mark.parametrize(
    ("template", "path"),
    [
        pytest.param(
            _spec(hostnameOverride="mcp"), f"{BASE}.spec.hostnameOverride", id="hostname-override"
        ),
        pytest.param(
            _spec(containers=[{"name": "mcp", "restartPolicyRules": []}]),
            f"{BASE}.spec.containers[0].restartPolicyRules",
            id="restart-policy-rules",
        ),
        pytest.param(
            _spec(containers=[{"name": "mcp", "targetContainerName": "x"}]),
            f"{BASE}.spec.containers[0].targetContainerName",
            id="target-outside-ephemeral",
        ),
    ],
)
def test_refuses_the_fields_the_shared_table_leaves_out(template: object, path: str) -> None:
    out = _check(template)
    assert [(e.path, e.message) for e in out.errors] == [(path, "unknown field")]


def test_an_ephemeral_container_is_typed_and_still_refused() -> None:
    out = _check(_spec(ephemeralContainers=[{"name": "debug", "targetContainerName": "mcp"}]))
    assert [e.path for e in out.errors] == [f"{BASE}.spec.ephemeralContainers"]
