"""The fields of `core/v1` PodTemplateSpec: one table for every component that reads a pod template.

Pure: no I/O. An MCPServer's `podTemplateSpec` (and the proxy runner's `--k8s-pod-patch`) is a
PodTemplateSpec the CRD keeps open, so Moorage checks it itself, in three places: the webhook
validates it in full, the proxy runner parses a patch by it before merging, and the operator
checks the shape it relies on before rendering the RunConfig. All three derive what they check
from this table, so they accept the same fields.

The table follows Kubernetes 1.34 with its default feature gates: the fields that are GA, or beta
and on by default. Alpha fields are left out (PodSpec `hostnameOverride`, new in 1.34 behind the
HostnameOverride gate; Container `restartPolicyRules` and a regular container's `restartPolicy`,
behind ContainerRestartRules): an apiserver without the gate drops or refuses them, so a template
that set one would not do what it says on a cluster with default gates, and for a StatefulSet one
`hostnameOverride` would give every replica the same hostname. All three places refuse them with
the field's path instead.

Each field has a kind: a scalar (`Text`, `Integer`, `Boolean`, `Quantity`, `IntOrString`), a
`ListOf` or `MapOf` another kind, a described object (`Struct`), or an object whose inside is
left to the apiserver (`Opaque`, e.g. affinity terms). A list's `merge_key` is Kubernetes'
`patchMergeKey` (strategic merge patches merge such a list element by element).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Text:
    enum: tuple[str, ...] = ()
    """Allowed values; empty means any string."""


@dataclass(frozen=True, slots=True)
class Integer:
    minimum: int = INT32_MIN
    maximum: int = INT32_MAX


@dataclass(frozen=True, slots=True)
class Boolean:
    pass


@dataclass(frozen=True, slots=True)
class Quantity:
    """A resource quantity: a string such as `500m` or `1Gi`, or a JSON number."""


@dataclass(frozen=True, slots=True)
class IntOrString:
    """A port by number (1-65535) or by name."""


@dataclass(frozen=True, slots=True)
class Opaque:
    """An object whose fields are not described here (the apiserver validates them)."""


@dataclass(frozen=True, slots=True)
class ListOf:
    item: Kind
    merge_key: str | None = None
    """The field that identifies an element in a strategic merge (`patchMergeKey`)."""
    replace_element: bool = False
    """A patch element replaces the matching element whole (`retainKeys`: a volume switched
    from `emptyDir` to `configMap` must not keep both)."""


@dataclass(frozen=True, slots=True)
class MapOf:
    value: Kind


@dataclass(frozen=True, slots=True)
class Struct:
    name: str
    """The Kubernetes type's name (`Container`, `Probe`, ...)."""
    fields: Mapping[str, Kind]
    required: frozenset[str] = frozenset()
    one_of: tuple[str, ...] = ()
    """At most one of these fields may be set (a union such as a volume's source)."""
    one_of_required: bool = False
    """Exactly one of `one_of` must be set."""


Kind = Text | Integer | Boolean | Quantity | IntOrString | Opaque | ListOf | MapOf | Struct

STRING: Final = Text()
BOOL: Final = Boolean()
INT32: Final = Integer()
INT64: Final = Integer(INT64_MIN, INT64_MAX)
NON_NEGATIVE_INT32: Final = Integer(0, INT32_MAX)
NON_NEGATIVE_INT64: Final = Integer(0, INT64_MAX)
PORT_NUMBER: Final = Integer(1, 65535)
FILE_MODE: Final = Integer(0, 0o777)
QUANTITY: Final = Quantity()
INT_OR_STRING: Final = IntOrString()
OPAQUE: Final = Opaque()
STRINGS: Final = ListOf(STRING)
STRING_MAP: Final = MapOf(STRING)
RESOURCE_MAP: Final = MapOf(QUANTITY)
PULL_POLICY: Final = Text(("Always", "Never", "IfNotPresent"))
PROFILE_TYPE: Final = Text(("RuntimeDefault", "Unconfined", "Localhost"))


def _pair(name: str, first: str, second: str) -> Struct:
    """A type of two required strings (`{"name": ..., "value": ...}` and the like)."""
    return Struct(name, {first: STRING, second: STRING}, required=frozenset({first, second}))


# -- metadata -----------------------------------------------------------------------------------

OBJECT_META: Final = Struct(
    "ObjectMeta",
    {
        "name": STRING,
        "generateName": STRING,
        "namespace": STRING,
        "selfLink": STRING,
        "uid": STRING,
        "resourceVersion": STRING,
        "generation": INT64,
        "creationTimestamp": STRING,
        "deletionTimestamp": STRING,
        "deletionGracePeriodSeconds": INT64,
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
        "ownerReferences": ListOf(OPAQUE),
        "finalizers": STRINGS,
        "managedFields": ListOf(OPAQUE),
    },
)

TEMPLATE_METADATA_FIELDS: Final = frozenset({"labels", "annotations"})
"""What of a pod template's metadata reaches the MCP server's pods; the StatefulSet controller
sets the rest (name, namespace, owners), so any other field set to a value is refused."""

# -- containers ---------------------------------------------------------------------------------

LOCAL_OBJECT_REFERENCE: Final = Struct("LocalObjectReference", {"name": STRING})
KEY_SELECTOR: Final = Struct(
    "KeySelector",
    {"name": STRING, "key": STRING, "optional": BOOL},
    required=frozenset({"key"}),
)
ENV_VAR: Final = Struct(
    "EnvVar",
    {
        "name": STRING,
        "value": STRING,
        "valueFrom": Struct(
            "EnvVarSource",
            {
                "configMapKeyRef": KEY_SELECTOR,
                "secretKeyRef": KEY_SELECTOR,
                "fieldRef": Struct(
                    "ObjectFieldSelector",
                    {"apiVersion": STRING, "fieldPath": STRING},
                    required=frozenset({"fieldPath"}),
                ),
                "resourceFieldRef": Struct(
                    "ResourceFieldSelector",
                    {"containerName": STRING, "resource": STRING, "divisor": QUANTITY},
                    required=frozenset({"resource"}),
                ),
                "fileKeyRef": OPAQUE,
            },
            one_of=(
                "configMapKeyRef",
                "secretKeyRef",
                "fieldRef",
                "resourceFieldRef",
                "fileKeyRef",
            ),
            one_of_required=True,
        ),
    },
    required=frozenset({"name"}),
)
_OPTIONAL_REF: Final = Struct("OptionalReference", {"name": STRING, "optional": BOOL})
ENV_FROM_SOURCE: Final = Struct(
    "EnvFromSource",
    {"prefix": STRING, "configMapRef": _OPTIONAL_REF, "secretRef": _OPTIONAL_REF},
    one_of=("configMapRef", "secretRef"),
    one_of_required=True,
)
CONTAINER_PORT: Final = Struct(
    "ContainerPort",
    {
        "name": STRING,
        "containerPort": PORT_NUMBER,
        "hostPort": Integer(0, 65535),
        "hostIP": STRING,
        "protocol": Text(("TCP", "UDP", "SCTP")),
    },
    required=frozenset({"containerPort"}),
)
RESOURCE_REQUIREMENTS: Final = Struct(
    "ResourceRequirements",
    {
        "limits": RESOURCE_MAP,
        "requests": RESOURCE_MAP,
        "claims": ListOf(
            Struct("ResourceClaim", {"name": STRING, "request": STRING}, frozenset({"name"}))
        ),
    },
)
SE_LINUX_OPTIONS: Final = Struct(
    "SELinuxOptions", {"level": STRING, "role": STRING, "type": STRING, "user": STRING}
)
SECCOMP_PROFILE: Final = Struct(
    "SeccompProfile",
    {"type": PROFILE_TYPE, "localhostProfile": STRING},
    required=frozenset({"type"}),
)
APPARMOR_PROFILE: Final = Struct(
    "AppArmorProfile",
    {"type": PROFILE_TYPE, "localhostProfile": STRING},
    required=frozenset({"type"}),
)
WINDOWS_OPTIONS: Final = Struct(
    "WindowsSecurityContextOptions",
    {
        "gmsaCredentialSpec": STRING,
        "gmsaCredentialSpecName": STRING,
        "hostProcess": BOOL,
        "runAsUserName": STRING,
    },
)
SECURITY_CONTEXT: Final = Struct(
    "SecurityContext",
    {
        "allowPrivilegeEscalation": BOOL,
        "appArmorProfile": APPARMOR_PROFILE,
        "capabilities": Struct("Capabilities", {"add": STRINGS, "drop": STRINGS}),
        "privileged": BOOL,
        "procMount": Text(("Default", "Unmasked")),
        "readOnlyRootFilesystem": BOOL,
        "runAsGroup": NON_NEGATIVE_INT64,
        "runAsNonRoot": BOOL,
        "runAsUser": NON_NEGATIVE_INT64,
        "seLinuxOptions": SE_LINUX_OPTIONS,
        "seccompProfile": SECCOMP_PROFILE,
        "windowsOptions": WINDOWS_OPTIONS,
    },
)
HTTP_GET_ACTION: Final = Struct(
    "HTTPGetAction",
    {
        "path": STRING,
        "port": INT_OR_STRING,
        "host": STRING,
        "scheme": Text(("HTTP", "HTTPS")),
        "httpHeaders": ListOf(_pair("HTTPHeader", "name", "value")),
    },
    required=frozenset({"port"}),
)
EXEC_ACTION: Final = Struct("ExecAction", {"command": STRINGS})
TCP_SOCKET_ACTION: Final = Struct(
    "TCPSocketAction", {"port": INT_OR_STRING, "host": STRING}, required=frozenset({"port"})
)
_HANDLERS: Final[Mapping[str, Kind]] = {
    "exec": EXEC_ACTION,
    "httpGet": HTTP_GET_ACTION,
    "tcpSocket": TCP_SOCKET_ACTION,
}
"""What a probe and a lifecycle hook may do, besides their own actions."""
PROBE: Final = Struct(
    "Probe",
    {
        **_HANDLERS,
        "grpc": Struct(
            "GRPCAction", {"port": PORT_NUMBER, "service": STRING}, required=frozenset({"port"})
        ),
        "initialDelaySeconds": NON_NEGATIVE_INT32,
        "periodSeconds": NON_NEGATIVE_INT32,
        "timeoutSeconds": NON_NEGATIVE_INT32,
        "successThreshold": NON_NEGATIVE_INT32,
        "failureThreshold": NON_NEGATIVE_INT32,
        "terminationGracePeriodSeconds": INT64,
    },
    one_of=(*_HANDLERS, "grpc"),
    one_of_required=True,
)
LIFECYCLE_HANDLER: Final = Struct(
    "LifecycleHandler",
    {
        **_HANDLERS,
        "sleep": Struct(
            "SleepAction", {"seconds": NON_NEGATIVE_INT64}, required=frozenset({"seconds"})
        ),
    },
    one_of=(*_HANDLERS, "sleep"),
    one_of_required=True,
)
VOLUME_MOUNT: Final = Struct(
    "VolumeMount",
    {
        "name": STRING,
        "mountPath": STRING,
        "readOnly": BOOL,
        "recursiveReadOnly": Text(("Disabled", "IfPossible", "Enabled")),
        "subPath": STRING,
        "subPathExpr": STRING,
        "mountPropagation": Text(("None", "HostToContainer", "Bidirectional")),
    },
    required=frozenset({"name", "mountPath"}),
)
CONTAINER: Final = Struct(
    "Container",
    {
        "name": STRING,
        "image": STRING,
        "command": STRINGS,
        "args": STRINGS,
        "workingDir": STRING,
        "ports": ListOf(CONTAINER_PORT, merge_key="containerPort"),
        "envFrom": ListOf(ENV_FROM_SOURCE),
        "env": ListOf(ENV_VAR, merge_key="name"),
        "resources": RESOURCE_REQUIREMENTS,
        "resizePolicy": ListOf(
            Struct(
                "ContainerResizePolicy",
                {
                    "resourceName": STRING,
                    "restartPolicy": Text(("NotRequired", "RestartContainer")),
                },
                required=frozenset({"resourceName", "restartPolicy"}),
            )
        ),
        "volumeMounts": ListOf(VOLUME_MOUNT, merge_key="mountPath"),
        "volumeDevices": ListOf(
            _pair("VolumeDevice", "name", "devicePath"), merge_key="devicePath"
        ),
        "livenessProbe": PROBE,
        "readinessProbe": PROBE,
        "startupProbe": PROBE,
        "lifecycle": Struct(
            "Lifecycle",
            {"postStart": LIFECYCLE_HANDLER, "preStop": LIFECYCLE_HANDLER, "stopSignal": STRING},
        ),
        "terminationMessagePath": STRING,
        "terminationMessagePolicy": Text(("File", "FallbackToLogsOnError")),
        "imagePullPolicy": PULL_POLICY,
        "securityContext": SECURITY_CONTEXT,
        "stdin": BOOL,
        "stdinOnce": BOOL,
        "tty": BOOL,
    },
    required=frozenset({"name"}),
)
"""A container of `containers`."""

INIT_CONTAINER: Final = Struct(
    "Container",
    {**CONTAINER.fields, "restartPolicy": Text(("Always",))},
    required=CONTAINER.required,
)
"""A container of `initContainers`: only these take `restartPolicy` (Always makes one a sidecar;
regular containers take it only behind the alpha ContainerRestartRules gate)."""

EPHEMERAL_CONTAINER: Final = Struct(
    "EphemeralContainer",
    {**CONTAINER.fields, "targetContainerName": STRING},
    required=CONTAINER.required,
)
"""An ephemeral container: a Container that may name the container it targets."""

# -- volumes ------------------------------------------------------------------------------------

_KEY_TO_PATH: Final = ListOf(
    Struct(
        "KeyToPath",
        {"key": STRING, "path": STRING, "mode": FILE_MODE},
        required=frozenset({"key", "path"}),
    )
)
_OPAQUE_VOLUME_SOURCES: Final = (
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "iscsi",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
)
VOLUME_SOURCES: Final[Mapping[str, Kind]] = {
    "configMap": Struct(
        "ConfigMapVolumeSource",
        {"name": STRING, "items": _KEY_TO_PATH, "defaultMode": FILE_MODE, "optional": BOOL},
    ),
    "secret": Struct(
        "SecretVolumeSource",
        {"secretName": STRING, "items": _KEY_TO_PATH, "defaultMode": FILE_MODE, "optional": BOOL},
    ),
    "emptyDir": Struct(
        "EmptyDirVolumeSource",
        {"medium": Text(("", "Memory", "HugePages")), "sizeLimit": QUANTITY},
    ),
    "persistentVolumeClaim": Struct(
        "PersistentVolumeClaimVolumeSource",
        {"claimName": STRING, "readOnly": BOOL},
        required=frozenset({"claimName"}),
    ),
    "projected": Struct(
        "ProjectedVolumeSource", {"sources": ListOf(OPAQUE), "defaultMode": FILE_MODE}
    ),
    "downwardAPI": Struct(
        "DownwardAPIVolumeSource", {"items": ListOf(OPAQUE), "defaultMode": FILE_MODE}
    ),
    "hostPath": Struct(
        "HostPathVolumeSource", {"path": STRING, "type": STRING}, required=frozenset({"path"})
    ),
    "nfs": Struct(
        "NFSVolumeSource",
        {"server": STRING, "path": STRING, "readOnly": BOOL},
        required=frozenset({"server", "path"}),
    ),
    "image": Struct("ImageVolumeSource", {"reference": STRING, "pullPolicy": PULL_POLICY}),
    "csi": OPAQUE,
    "ephemeral": OPAQUE,
    **dict.fromkeys(_OPAQUE_VOLUME_SOURCES, OPAQUE),
}
"""The sources a volume may have (exactly one per volume)."""

VOLUME: Final = Struct(
    "Volume",
    {"name": STRING, **VOLUME_SOURCES},
    required=frozenset({"name"}),
    one_of=tuple(VOLUME_SOURCES),
)

# -- the pod ------------------------------------------------------------------------------------

TOLERATION: Final = Struct(
    "Toleration",
    {
        "key": STRING,
        "operator": Text(("Exists", "Equal")),
        "value": STRING,
        "effect": Text(("", "NoSchedule", "PreferNoSchedule", "NoExecute")),
        "tolerationSeconds": INT64,
    },
)
AFFINITY: Final = Struct(
    "Affinity", {"nodeAffinity": OPAQUE, "podAffinity": OPAQUE, "podAntiAffinity": OPAQUE}
)
TOPOLOGY_SPREAD_CONSTRAINT: Final = Struct(
    "TopologySpreadConstraint",
    {
        "maxSkew": Integer(1, INT32_MAX),
        "topologyKey": STRING,
        "whenUnsatisfiable": Text(("DoNotSchedule", "ScheduleAnyway")),
        "labelSelector": OPAQUE,
        "minDomains": Integer(1, INT32_MAX),
        "nodeAffinityPolicy": Text(("Honor", "Ignore")),
        "nodeTaintsPolicy": Text(("Honor", "Ignore")),
        "matchLabelKeys": STRINGS,
    },
    required=frozenset({"maxSkew", "topologyKey", "whenUnsatisfiable"}),
)
POD_SECURITY_CONTEXT: Final = Struct(
    "PodSecurityContext",
    {
        "appArmorProfile": APPARMOR_PROFILE,
        "fsGroup": NON_NEGATIVE_INT64,
        "fsGroupChangePolicy": Text(("OnRootMismatch", "Always")),
        "runAsGroup": NON_NEGATIVE_INT64,
        "runAsNonRoot": BOOL,
        "runAsUser": NON_NEGATIVE_INT64,
        "seLinuxChangePolicy": STRING,
        "seLinuxOptions": SE_LINUX_OPTIONS,
        "seccompProfile": SECCOMP_PROFILE,
        "supplementalGroups": ListOf(NON_NEGATIVE_INT64),
        "supplementalGroupsPolicy": Text(("Merge", "Strict")),
        "sysctls": ListOf(_pair("Sysctl", "name", "value")),
        "windowsOptions": WINDOWS_OPTIONS,
    },
)
POD_SPEC: Final = Struct(
    "PodSpec",
    {
        "activeDeadlineSeconds": Integer(1, INT64_MAX),
        "affinity": AFFINITY,
        "automountServiceAccountToken": BOOL,
        "containers": ListOf(CONTAINER, merge_key="name"),
        "dnsConfig": Struct(
            "PodDNSConfig",
            {
                "nameservers": STRINGS,
                "searches": STRINGS,
                "options": ListOf(Struct("PodDNSConfigOption", {"name": STRING, "value": STRING})),
            },
        ),
        "dnsPolicy": Text(("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")),
        "enableServiceLinks": BOOL,
        "ephemeralContainers": ListOf(EPHEMERAL_CONTAINER, merge_key="name"),
        "hostAliases": ListOf(
            Struct("HostAlias", {"ip": STRING, "hostnames": STRINGS}, frozenset({"ip"})),
            merge_key="ip",
        ),
        "hostIPC": BOOL,
        "hostNetwork": BOOL,
        "hostPID": BOOL,
        "hostUsers": BOOL,
        "hostname": STRING,
        "imagePullSecrets": ListOf(LOCAL_OBJECT_REFERENCE, merge_key="name"),
        "initContainers": ListOf(INIT_CONTAINER, merge_key="name"),
        "nodeName": STRING,
        "nodeSelector": STRING_MAP,
        "os": Struct("PodOS", {"name": Text(("linux", "windows"))}, frozenset({"name"})),
        "overhead": RESOURCE_MAP,
        "preemptionPolicy": Text(("PreemptLowerPriority", "Never")),
        "priority": INT32,
        "priorityClassName": STRING,
        "readinessGates": ListOf(
            Struct("PodReadinessGate", {"conditionType": STRING}, frozenset({"conditionType"}))
        ),
        "resourceClaims": ListOf(
            Struct(
                "PodResourceClaim",
                {
                    "name": STRING,
                    "resourceClaimName": STRING,
                    "resourceClaimTemplateName": STRING,
                },
                required=frozenset({"name"}),
            ),
            merge_key="name",
            replace_element=True,
        ),
        "resources": RESOURCE_REQUIREMENTS,
        "restartPolicy": Text(("Always", "OnFailure", "Never")),
        "runtimeClassName": STRING,
        "schedulerName": STRING,
        "schedulingGates": ListOf(
            Struct("PodSchedulingGate", {"name": STRING}, frozenset({"name"})), merge_key="name"
        ),
        "securityContext": POD_SECURITY_CONTEXT,
        "serviceAccount": STRING,
        "serviceAccountName": STRING,
        "setHostnameAsFQDN": BOOL,
        "shareProcessNamespace": BOOL,
        "subdomain": STRING,
        "terminationGracePeriodSeconds": NON_NEGATIVE_INT64,
        "tolerations": ListOf(TOLERATION),
        "topologySpreadConstraints": ListOf(TOPOLOGY_SPREAD_CONSTRAINT, merge_key="topologyKey"),
        "volumes": ListOf(VOLUME, merge_key="name", replace_element=True),
    },
)

POD_TEMPLATE_SPEC: Final = Struct("PodTemplateSpec", {"metadata": OBJECT_META, "spec": POD_SPEC})
"""`core/v1` PodTemplateSpec, the root of the table."""

CONTAINER_LISTS: Final[Mapping[str, Struct]] = {
    "containers": CONTAINER,
    "initContainers": INIT_CONTAINER,
    "ephemeralContainers": EPHEMERAL_CONTAINER,
}
"""The PodSpec fields that list containers, and the type of their elements."""

# -- coarse views -------------------------------------------------------------------------------

_CONTAINER_TYPES: Final = frozenset(struct.name for struct in CONTAINER_LISTS.values())


def json_type(kind: Kind) -> str:
    """The JSON type of a field of `kind`, in words ("string", "list of objects", ...), for a
    check that looks no deeper than a field's own type (a list of containers is named apart:
    its elements are worth a closer look)."""
    match kind:
        case Text():
            return "string"
        case Integer():
            return "integer"
        case Boolean():
            return "boolean"
        case Struct() | Opaque():
            return "object"
        case MapOf(value=Text()):
            return "map of strings"
        case MapOf(value=Quantity()):
            return "map of quantities"
        case ListOf(item=Text()):
            return "list of strings"
        case ListOf(item=Struct(name=name)) if name in _CONTAINER_TYPES:
            return "list of containers"
        case ListOf(item=Struct() | Opaque()):
            return "list of objects"
    raise ValueError(f"no coarse JSON type for {kind!r}")


def json_types(struct: Struct) -> dict[str, str]:
    """`json_type` of each field of `struct`."""
    return {name: json_type(kind) for name, kind in struct.fields.items()}


def element_keys(struct: Struct) -> dict[str, tuple[str, str]]:
    """The lists of objects in `struct` whose every element must carry a key: the key and its
    `json_type`. The key is the merge key, or, for a list not merged by key, the element's one
    required field (a readiness gate's `conditionType`)."""
    keys: dict[str, tuple[str, str]] = {}
    for name, kind in struct.fields.items():
        if not isinstance(kind, ListOf) or not isinstance(kind.item, Struct):
            continue
        key = kind.merge_key
        if key is None and len(kind.item.required) == 1:
            (key,) = kind.item.required
        if key is not None:
            keys[name] = (key, json_type(kind.item.fields[key]))
    return keys
