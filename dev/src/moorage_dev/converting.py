"""Rewrite the incumbent operator's resources (group `toolhive.stacklok.dev`) into Moorage's.

`convert_documents(documents)` takes the parsed documents of a manifest and returns Moorage's
documents, names and namespaces kept, with every field that could not be carried over reported
by kind, name and field path and why (`Dropped`). What maps to what is docs/migrating.md; this
module is its executable form. MCPServer, MCPToolConfig and MCPRegistry convert; MCPRemoteProxy,
MCPGroup and the incumbent's other kinds have no Moorage kind yet and are reported whole.
Documents of other groups (the ConfigMaps and Secrets beside them) pass through unchanged.

Both of the incumbent's API versions are read: `v1beta1` (`proxyPort`, `mcpPort`, MCPRegistry
`configYAML`) and the older `v1alpha1` (`port`, `targetPort`, inline `oidcConfig`, MCPRegistry
`source`). Every converted object is validated with Moorage's own models, so the output is never
something the apiserver would refuse for its shape.

Pure: no I/O. The CLI (`moorage-dev convert`) reads and writes the files.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import yaml
from pydantic import ValidationError

from moorage_api.base import validation_messages
from moorage_api.constants import API_VERSION
from moorage_api.mcpregistry import parse_mcpregistry
from moorage_api.mcpserver import parse_mcpserver
from moorage_api.mcptoolconfig import parse_mcptoolconfig

JsonObject = dict[str, Any]

INCUMBENT_GROUP: Final = "toolhive.stacklok.dev"
KEPT_METADATA: Final = ("name", "namespace", "labels", "annotations")
"""Metadata carried over; the rest (uid, resourceVersion, managedFields, ...) is the
apiserver's own and is never reported."""
SERVER_SET: Final = frozenset({"status"})
"""Top-level fields the apiserver or the incumbent's controllers write: left out silently."""


@dataclass(frozen=True, slots=True)
class Dropped:
    """One field (or whole resource) that was not carried over."""

    kind: str
    name: str
    field: str
    """Path in the incumbent's resource (`spec.oidcConfigRef`); `-` for the whole resource."""
    reason: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}: {self.field}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Conversion:
    """Moorage's documents, in input order, and what was left behind."""

    documents: list[JsonObject] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)


@dataclass(slots=True)
class _Spec:
    """Reads one incumbent spec: each field is taken once; what is left at the end is unknown."""

    kind: str
    name: str
    source: dict[str, Any]
    dropped: list[Dropped]
    prefix: str = "spec"

    def take(self, key: str) -> Any:
        return self.source.pop(key, None)

    def drop(self, key: str, reason: str) -> None:
        if key in self.source:
            self.source.pop(key)
            self.report(key, reason)

    def report(self, key: str, reason: str) -> None:
        self.dropped.append(Dropped(self.kind, self.name, f"{self.prefix}.{key}", reason))

    def drop_rest(self) -> None:
        for key in sorted(self.source):
            self.report(key, "not a field Moorage knows; left out")
        self.source.clear()


def _is_incumbent(doc: Mapping[str, Any]) -> bool:
    return str(doc.get("apiVersion") or "").startswith(INCUMBENT_GROUP + "/")


def _metadata(doc: Mapping[str, Any]) -> JsonObject:
    meta = doc.get("metadata") or {}
    return {k: copy.deepcopy(meta[k]) for k in KEPT_METADATA if meta.get(k)}


def _set(target: JsonObject, key: str, value: Any) -> None:
    if value is not None:
        target[key] = value


# -- MCPServer --------------------------------------------------------------------------------

NO_KIND: Final = "Moorage has no kind for it yet"
UNSUPPORTED_SERVER_FIELDS: Final[Mapping[str, str]] = {
    "oidcConfigRef": f"references an MCPOIDCConfig ({NO_KIND}); set spec.oidcConfig inline",
    "authzConfigRef": f"references an MCPAuthzConfig ({NO_KIND}); set spec.authzConfig inline",
    "externalAuthConfigRef": f"references an MCPExternalAuthConfig ({NO_KIND})",
    "webhookConfigRef": f"references an MCPWebhookConfig ({NO_KIND})",
    "authServerRef": "Moorage runs no embedded authorisation server",
    "telemetryConfigRef": "OpenTelemetry export is not implemented; Moorage serves /metrics",
    "telemetry": "OpenTelemetry export is not implemented; Moorage serves /metrics",
    "groupRef": f"MCPGroup membership ({NO_KIND})",
    "sessionStorage": "session storage is not configurable (sessions live in the proxy)",
    "rateLimiting": "rate limits are not implemented",
    "volumes": (
        "host path volumes are not a field; add them under spec.podTemplateSpec (an MCPTenant "
        "must allow HostPath for the namespace)"
    ),
    "tools": "use an MCPToolConfig (spec.toolConfigRef) to filter tools",
}
"""The incumbent's MCPServer fields with no Moorage equivalent, and what to do instead."""

SAME_NAME_SERVER_FIELDS: Final = (
    "image",
    "transport",
    "proxyMode",
    "args",
    "env",
    "secrets",
    "serviceAccount",
    "resources",
    "podTemplateSpec",
    "authzConfig",
    "audit",
    "toolConfigRef",
    "trustProxyHeaders",
    "endpointPrefix",
    "sessionAffinity",
    "replicas",
    "backendReplicas",
)
"""Fields that mean the same in both APIs and keep their name and shape."""


def _convert_permission_profile(spec: _Spec, out: JsonObject) -> None:
    profile = spec.take("permissionProfile")
    if not isinstance(profile, Mapping):
        return
    kind = str(profile.get("type") or "")
    converted: JsonObject = {
        "type": "configMap" if kind.lower() == "configmap" else kind,
        "name": profile.get("name"),
    }
    _set(converted, "key", profile.get("key"))
    out["permissionProfile"] = converted


def _allowed_service_account(
    source: dict[str, Any], spec: _Spec, *, namespace: str | None
) -> list[str] | None:
    """The incumbent's `serviceAccount` (+ `namespace`, default the server's) as Moorage's
    `allowedServiceAccounts` entry `namespace/name`."""
    account = source.pop("serviceAccount", None)
    account_namespace = source.pop("namespace", None) or namespace
    if account is None:
        if account_namespace is not None and account_namespace != namespace:
            spec.report(
                "oidcConfig.kubernetes.namespace",
                "a namespace alone has no equivalent; list `namespace/name` entries in "
                "oidcConfig.kubernetes.allowedServiceAccounts",
            )
        return None
    if account_namespace is None:
        spec.report(
            "oidcConfig.kubernetes.serviceAccount",
            "the manifest names no namespace; add `<namespace>/"
            f"{account}` to oidcConfig.kubernetes.allowedServiceAccounts",
        )
        return None
    return [f"{account_namespace}/{account}"]


def _convert_oidc(spec: _Spec, out: JsonObject, *, namespace: str | None) -> None:
    """The `v1alpha1` inline `oidcConfig`; fields Moorage's OIDC has no place for are reported."""
    oidc = spec.take("oidcConfig")
    if not isinstance(oidc, Mapping):
        return
    kind = str(oidc.get("type") or "")
    where = "oidcConfig"
    if kind == "kubernetes":
        source = dict(oidc.get("kubernetes") or {})
        converted: JsonObject = {}
        _set(converted, "audience", source.pop("audience", None))
        _set(converted, "issuer", source.pop("issuer", None))
        _set(
            converted,
            "allowedServiceAccounts",
            _allowed_service_account(source, spec, namespace=namespace),
        )
        for key in sorted(source):
            spec.report(f"{where}.kubernetes.{key}", "no equivalent in kubernetes OIDC")
        out["oidcConfig"] = {"type": "kubernetes", "kubernetes": converted}
    elif kind == "inline":
        source = dict(oidc.get("inline") or {})
        converted = {}
        for key in ("issuer", "audience", "jwksUrl", "clientId"):
            _set(converted, key, source.pop(key, None))
        for key in sorted(source):
            spec.report(f"{where}.inline.{key}", "no equivalent in inline OIDC")
        out["oidcConfig"] = {"type": "inline", "inline": converted}
    elif kind.lower() == "configmap":
        source = dict(oidc.get("configMap") or {})
        converted = {"name": source.pop("name", None)}
        _set(converted, "key", source.pop("key", None))
        out["oidcConfig"] = {"type": "configMap", "configMap": converted}
    else:
        spec.report(where, f"OIDC type {kind!r} has no equivalent")
    for key in sorted(set(oidc) - {"type", "kubernetes", "inline", "configMap"}):
        spec.report(f"{where}.{key}", "no equivalent")


def _convert_overrides(spec: _Spec, out: JsonObject) -> None:
    overrides = spec.take("resourceOverrides")
    if not isinstance(overrides, Mapping):
        return
    converted: JsonObject = {}
    deployment = dict(overrides.get("proxyDeployment") or {})
    if deployment:
        if deployment.pop("imagePullSecrets", None) is not None:
            spec.report(
                "resourceOverrides.proxyDeployment.imagePullSecrets",
                "the proxy runner image is Moorage's own; pull secrets go on its ServiceAccount",
            )
        kept = {
            k: deployment.pop(k)
            for k in ("labels", "annotations", "env", "podTemplateMetadataOverrides")
            if k in deployment
        }
        for key in sorted(deployment):
            spec.report(f"resourceOverrides.proxyDeployment.{key}", "no equivalent")
        converted["proxyDeployment"] = kept
    service = dict(overrides.get("proxyService") or {})
    if service:
        kept = {k: service.pop(k) for k in ("labels", "annotations") if k in service}
        for key in sorted(service):
            spec.report(f"resourceOverrides.proxyService.{key}", "no equivalent")
        converted["proxyService"] = kept
    for key in sorted(set(overrides) - {"proxyDeployment", "proxyService"}):
        spec.report(f"resourceOverrides.{key}", "no equivalent")
    if converted:
        out["resourceOverrides"] = converted


def _convert_server_spec(spec: _Spec, *, namespace: str | None) -> JsonObject:
    out: JsonObject = {}
    for key in SAME_NAME_SERVER_FIELDS:
        _set(out, key, spec.take(key))
    # v1beta1 names first; the v1alpha1 names are the same ports.
    for ours, theirs in (
        ("port", ("proxyPort", "port")),
        ("targetPort", ("mcpPort", "targetPort")),
    ):
        values = [v for v in (spec.take(name) for name in theirs) if v is not None]
        if values:
            out[ours] = values[0]
    _convert_permission_profile(spec, out)
    _convert_oidc(spec, out, namespace=namespace)
    _convert_overrides(spec, out)
    for key, reason in UNSUPPORTED_SERVER_FIELDS.items():
        spec.drop(key, reason)
    return out


# -- MCPToolConfig ----------------------------------------------------------------------------


OVERRIDE_FIELDS: Final = ("name", "description")


def _convert_tool_config_spec(spec: _Spec, *, namespace: str | None) -> JsonObject:
    out: JsonObject = {}
    _set(out, "toolsFilter", spec.take("toolsFilter"))
    overrides: JsonObject = {}
    for tool, override in (spec.take("toolsOverride") or {}).items():
        override = dict(override or {})
        kept = {k: override.pop(k) for k in OVERRIDE_FIELDS if override.get(k)}
        for key in sorted(override):
            spec.report(
                f"toolsOverride.{tool}.{key}",
                "only a tool's name and description can be overridden",
            )
        if kept:
            overrides[tool] = kept
    if overrides:
        out["toolsOverride"] = overrides
    return out


# -- MCPRegistry ------------------------------------------------------------------------------


def _convert_git(source: Mapping[str, Any], spec: _Spec, where: str) -> JsonObject:
    git = dict(source)
    converted: JsonObject = {"repository": git.pop("repository", None)}
    for key in ("branch", "tag", "commit", "path"):
        _set(converted, key, git.pop(key, None))
    for key in sorted(git):
        spec.report(f"{where}.{key}", "no equivalent in a git source")
    return converted


def _convert_filter(value: Any) -> JsonObject | None:
    if not isinstance(value, Mapping):
        return None
    return {k: value[k] for k in ("names", "tags") if isinstance(value.get(k), Mapping)} or None


def _convert_legacy_registry(spec: _Spec) -> JsonObject:
    """The `v1alpha1` shape, which Moorage's MCPRegistry follows."""
    out: JsonObject = {}
    source = dict(spec.take("source") or {})
    kind = str(source.pop("type", "")).lower()
    converted: JsonObject = {}
    if kind == "configmap":
        configmap = dict(source.pop("configmap", None) or source.pop("configMap", None) or {})
        converted = {"type": "configMap", "configMap": configmap}
    elif kind == "git":
        converted = {"type": "git", "git": _convert_git(source.pop("git", {}), spec, "source.git")}
    else:
        spec.report("source.type", f"source type {kind!r} has no equivalent (configMap or git)")
    _set(converted, "format", source.pop("format", None))
    for key in sorted(source):
        spec.report(f"source.{key}", "no equivalent")
    out["source"] = converted
    policy = spec.take("syncPolicy")
    if isinstance(policy, Mapping) and policy.get("interval"):
        out["syncPolicy"] = {"interval": policy["interval"]}
    _set(out, "filter", _convert_filter(spec.take("filter")))
    return out


def _volume_configmaps(spec: _Spec) -> dict[str, JsonObject]:
    """Mount path → `{name, key}` of each ConfigMap the registry server mounts (single key)."""
    volumes = {str(v.get("name")): v for v in spec.take("volumes") or [] if isinstance(v, Mapping)}
    found: dict[str, JsonObject] = {}
    for mount in spec.take("volumeMounts") or []:
        volume = volumes.get(str((mount or {}).get("name")))
        configmap = (volume or {}).get("configMap")
        if not isinstance(configmap, Mapping):
            continue
        items = configmap.get("items") or []
        for item in items:
            path = f"{str(mount.get('mountPath')).rstrip('/')}/{item.get('path')}"
            found[path] = {"name": configmap.get("name"), "key": item.get("key")}
    return found


REGISTRY_SERVER_SETTINGS: Final[Mapping[str, str]] = {
    "registries": "an MCPRegistry serves its one source; there are no named registries",
    "database": "the registry API keeps its data in ConfigMap <name>-registry-storage, no database",
    "auth": "the registry API is read-only inside the cluster and has no authentication modes",
}


def _convert_config_yaml_registry(spec: _Spec) -> JsonObject:
    """The `v1beta1` shape: a registry server's `configYAML`, one source of which can map."""
    mounted = _volume_configmaps(spec)
    try:
        config = yaml.safe_load(str(spec.take("configYAML") or "")) or {}
    except yaml.YAMLError as exc:
        spec.report("configYAML", f"is not YAML ({exc})")
        return {}
    if not isinstance(config, Mapping):
        spec.report("configYAML", "is not a mapping")
        return {}
    sources = [s for s in config.get("sources") or [] if isinstance(s, Mapping)]
    for key in sorted(set(config) - {"sources"}):
        spec.report(f"configYAML.{key}", REGISTRY_SERVER_SETTINGS.get(key, "no equivalent"))
    for index, extra in enumerate(sources[1:], start=1):
        spec.report(
            f"configYAML.sources[{index}]",
            f"an MCPRegistry has one source; {extra.get('name')!r} needs an MCPRegistry of its own",
        )
    if not sources:
        spec.report("configYAML.sources", "no source to convert")
        return {}
    first = dict(sources[0])
    first.pop("name", None)
    out: JsonObject = {}
    converted: JsonObject = {}
    if "file" in first:
        path = str((first.pop("file") or {}).get("path") or "")
        configmap = mounted.get(path)
        if configmap is None:
            spec.report(
                "configYAML.sources[0].file",
                f"{path!r} is not a key of a mounted ConfigMap; only ConfigMap files convert",
            )
            return {}
        converted = {"type": "configMap", "configMap": configmap}
    elif "git" in first:
        git = _convert_git(first.pop("git") or {}, spec, "configYAML.sources[0].git")
        converted = {"type": "git", "git": git}
    else:
        spec.report("configYAML.sources[0]", "only file (from a ConfigMap) and git sources convert")
        return {}
    _set(converted, "format", first.pop("format", None))
    out["source"] = converted
    policy = first.pop("syncPolicy", None)
    if isinstance(policy, Mapping) and policy.get("interval"):
        out["syncPolicy"] = {"interval": policy["interval"]}
    _set(out, "filter", _convert_filter(first.pop("filter", None)))
    for key in sorted(first):
        spec.report(f"configYAML.sources[0].{key}", "no equivalent")
    return out


def _convert_registry_spec(spec: _Spec, *, namespace: str | None) -> JsonObject:
    spec.drop("displayName", "no equivalent; put it in an annotation")
    for key in ("podTemplateSpec", "imagePullSecrets", "pgpassSecretRef"):
        spec.drop(key, "the registry API Deployment is Moorage's own and has no database")
    if "configYAML" in spec.source:
        return _convert_config_yaml_registry(spec)
    return _convert_legacy_registry(spec)


# -- documents --------------------------------------------------------------------------------

SpecConverter = Callable[..., JsonObject]
"""`(spec, *, namespace) -> Moorage's spec`; `namespace` is the manifest's, if it names one."""

CONVERTERS: Final[Mapping[str, tuple[SpecConverter, Callable[[dict[str, Any]], object]]]] = {
    "MCPServer": (_convert_server_spec, parse_mcpserver),
    "MCPToolConfig": (_convert_tool_config_spec, parse_mcptoolconfig),
    "MCPRegistry": (_convert_registry_spec, parse_mcpregistry),
}
"""Kind → (spec converter, Moorage's parser that validates the result)."""

NO_EQUIVALENT_KINDS: Final[Mapping[str, str]] = {
    "MCPRemoteProxy": "remote proxies are not implemented yet; not converted",
    "MCPGroup": "groups are not implemented yet; not converted",
}


def convert_document(doc: Mapping[str, Any], dropped: list[Dropped]) -> JsonObject | None:
    """One document converted (or passed through); None when it has no Moorage form."""
    if not _is_incumbent(doc):
        return copy.deepcopy(dict(doc))
    kind = str(doc.get("kind") or "")
    name = str((doc.get("metadata") or {}).get("name") or "")
    if kind not in CONVERTERS:
        reason = NO_EQUIVALENT_KINDS.get(kind, f"{kind} has no Moorage equivalent; not converted")
        dropped.append(Dropped(kind, name, "-", reason))
        return None
    convert, validate = CONVERTERS[kind]
    mine: list[Dropped] = []
    spec = _Spec(kind, name, copy.deepcopy(dict(doc.get("spec") or {})), mine)
    converted: JsonObject = {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": _metadata(doc),
        "spec": convert(spec, namespace=(doc.get("metadata") or {}).get("namespace")),
    }
    spec.drop_rest()
    for key in sorted(set(doc) - {"apiVersion", "kind", "metadata", "spec"} - SERVER_SET):
        mine.append(Dropped(kind, name, key, "not a field Moorage knows; left out"))
    try:
        validate(copy.deepcopy(converted))
    except ValidationError as exc:
        messages = "; ".join(validation_messages(exc))
        dropped.extend(mine)
        dropped.append(Dropped(kind, name, "-", f"Moorage's API refuses the result: {messages}"))
        return None
    dropped.extend(mine)
    return converted


def convert_documents(documents: Iterable[Mapping[str, Any] | None]) -> Conversion:
    """Every document converted; empty documents (a `---` at the end) are skipped."""
    result = Conversion()
    for doc in documents:
        if not doc:
            continue
        converted = convert_document(doc, result.dropped)
        if converted is not None:
            result.documents.append(converted)
    return result
