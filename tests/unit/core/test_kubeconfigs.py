"""Credential loading without kubernetes_asyncio: kubeconfig parsing and merging, every field and
every rejection, exec plugins, rotating token files and the in-cluster service account."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import stat
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moorage_core import kubeconfigs as kc
from moorage_core.errors import KubeError

B64 = base64.b64encode


def b64(text: str) -> str:
    return B64(text.encode()).decode()


def doc(
    *,
    cluster: dict[str, Any] | None = None,
    user: dict[str, Any] | None = None,
    current: str | None = "ctx",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster or {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": user or {}}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
    }
    if current is not None:
        body["current-context"] = current
    return body


def write(path: Path, body: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(body))
    return path


def resolve(path: Path, *, context: str | None = None) -> kc.ResolvedContext:
    return kc.resolve_context(kc.read_kubeconfig([path], explicit=True), context=context)


# -- fields ------------------------------------------------------------------------------------


def test_reads_server_and_relative_certificate_paths_against_the_files_folder(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path / "conf" / "config",
        doc(
            cluster={
                "server": "https://127.0.0.1:6443/",
                "certificate-authority": "pki/ca.crt",
                "tls-server-name": "kubernetes",
            },
            user={"client-certificate": "pki/c.crt", "client-key": "/abs/c.key"},
        ),
    )
    got = resolve(path)
    assert got.server == "https://127.0.0.1:6443"
    assert got.tls.ca_file == tmp_path / "conf" / "pki" / "ca.crt"
    assert got.tls.server_name == "kubernetes"
    assert got.tls.cert_file == tmp_path / "conf" / "pki" / "c.crt"
    assert got.tls.key_file == Path("/abs/c.key")
    assert not got.tls.insecure


@pytest.mark.parametrize(
    ("cluster", "user", "expect"),
    [
        (
            {"server": "https://h", "certificate-authority-data": b64("CA")},
            {},
            {"ca_data": b"CA", "ca_file": None},
        ),
        (
            {"server": "https://h", "insecure-skip-tls-verify": True},
            {},
            {"insecure": True},
        ),
        (
            {"server": "https://h"},
            {"client-certificate-data": b64("CERT"), "client-key-data": b64("KEY")},
            {"cert_data": b"CERT", "key_data": b"KEY", "cert_file": None},
        ),
        (
            {
                "server": "https://h",
                "certificate-authority": "x",
                "certificate-authority-data": b64("CA"),
            },
            {},
            {"ca_data": b"CA", "ca_file": None},
        ),
    ],
    ids=["ca-data", "insecure", "client-cert-data", "ca-data-wins-over-path"],
)
def test_reads_tls_fields(
    tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any], expect: dict[str, Any]
) -> None:
    tls = resolve(write(tmp_path / "config", doc(cluster=cluster, user=user))).tls
    for key, value in expect.items():
        assert getattr(tls, key) == value, key


@pytest.mark.parametrize(
    ("user", "header"),
    [
        ({"token": "abc"}, "Bearer abc"),
        ({"username": "ann", "password": "pw"}, "Basic " + b64("ann:pw")),
        ({"token": "abc", "username": "ann", "password": "pw"}, "Bearer abc"),
        ({}, None),
    ],
    ids=["token", "basic", "token-wins-over-basic", "none"],
)
async def test_builds_the_authorization_header(
    tmp_path: Path, user: dict[str, Any], header: str | None
) -> None:
    creds = kc.credentials_from_context(resolve(write(tmp_path / "config", doc(user=user))))
    headers = await creds.auth.headers()
    assert headers.get("Authorization") == header


async def test_token_file_is_relative_to_the_kubeconfig_and_reread_when_it_changes(
    tmp_path: Path,
) -> None:
    token = tmp_path / "tok"
    token.write_text("one\n")
    creds = kc.credentials_from_context(
        resolve(write(tmp_path / "config", doc(user={"tokenFile": "tok"})))
    )
    assert isinstance(creds.auth, kc.TokenFileAuth)
    assert await creds.auth.headers() == {"Authorization": "Bearer one"}
    token.write_text("two\n")
    os.utime(token, ns=(0, token.stat().st_mtime_ns + 1_000_000_000))
    assert await creds.auth.headers() == {"Authorization": "Bearer two"}


def test_token_file_is_reread_every_minute_even_with_the_same_mtime(tmp_path: Path) -> None:
    now = [1000.0]
    token = tmp_path / "tok"
    token.write_text("one")
    auth = kc.TokenFileAuth(token, clock=lambda: now[0])
    assert auth.current() == "one"
    mtime = token.stat().st_mtime_ns
    token.write_text("two")
    os.utime(token, ns=(mtime, mtime))
    assert auth.current() == "one"
    now[0] += kc.TOKEN_FILE_MAX_AGE
    assert auth.current() == "two"


def test_token_file_keeps_the_last_token_when_it_briefly_vanishes(tmp_path: Path) -> None:
    token = tmp_path / "tok"
    token.write_text("one")
    auth = kc.TokenFileAuth(token)
    assert auth.current() == "one"
    token.unlink()
    assert auth.current() == "one"


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot be read"), ("  \n", "is empty")],
    ids=["missing", "empty"],
)
def test_token_file_rejections(tmp_path: Path, content: str | None, message: str) -> None:
    token = tmp_path / "tok"
    if content is not None:
        token.write_text(content)
    with pytest.raises(KubeError, match=message) as info:
        kc.TokenFileAuth(token).current()
    assert str(token) in str(info.value)


# -- merging -----------------------------------------------------------------------------------


def test_merge_first_file_wins_for_each_name_and_for_current_context(tmp_path: Path) -> None:
    first = {
        "clusters": [{"name": "c", "cluster": {"server": "https://first"}}],
        "users": [{"name": "u", "user": {"token": "first"}}],
        "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "a",
    }
    second = {
        "clusters": [
            {"name": "c", "cluster": {"server": "https://second"}},
            {"name": "d", "cluster": {"server": "https://only-second"}},
        ],
        "users": [{"name": "u", "user": {"token": "second"}}],
        "contexts": [
            {"name": "a", "context": {"cluster": "d", "user": "u"}},
            {"name": "b", "context": {"cluster": "d", "user": "u"}},
        ],
        "current-context": "b",
    }
    p1, p2 = write(tmp_path / "one", first), write(tmp_path / "two", second)
    merged = kc.read_kubeconfig(
        kc.kubeconfig_paths(None, environ={"KUBECONFIG": f"{p1}:{tmp_path / 'absent'}:{p2}"}),
        explicit=False,
    )
    assert merged.current_context == "a"
    assert merged.sources == (p1, p2)
    current = kc.resolve_context(merged)
    assert (current.server, current.token) == ("https://first", "first")
    other = kc.resolve_context(merged, context="b")
    assert (other.server, other.token) == ("https://only-second", "first")


def test_merge_takes_current_context_from_a_later_file_when_earlier_ones_set_none(
    tmp_path: Path,
) -> None:
    p1 = write(tmp_path / "one", {"clusters": [], "current-context": ""})
    p2 = write(tmp_path / "two", doc())
    merged = kc.read_kubeconfig([p1, p2], explicit=False)
    assert merged.current_context == "ctx"
    assert merged.current_context_source == p2


def test_paths_explicit_then_kubeconfig_then_home(tmp_path: Path) -> None:
    assert kc.kubeconfig_paths("/x", environ={"KUBECONFIG": "/y"}) == [Path("/x")]
    assert kc.kubeconfig_paths(None, environ={"KUBECONFIG": "/y::/z:/y"}) == [
        Path("/y"),
        Path("/z"),
    ]
    assert kc.kubeconfig_paths(None, environ={}) == [Path("~/.kube/config").expanduser()]


def test_a_named_context_overrides_current_context(tmp_path: Path) -> None:
    body = doc()
    body["clusters"].append({"name": "other", "cluster": {"server": "https://other"}})
    body["contexts"].append({"name": "second", "context": {"cluster": "other", "user": "u"}})
    path = write(tmp_path / "config", body)
    assert resolve(path, context="second").server == "https://other"


# -- rejections --------------------------------------------------------------------------------


def _set(body: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    target: Any = body
    keys = dotted.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    last = keys[-1]
    if isinstance(target, list):
        target[int(last)] = value
    elif value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return body


_DELETE = object()


@pytest.mark.parametrize(
    ("dotted", "value", "message"),
    [
        ("clusters", {"c": 1}, "`clusters` must be a list"),
        ("clusters.0", "c", r"clusters\[0\] must be a mapping"),
        ("clusters.0.name", 5, r"clusters\[0\]: `name` is missing"),
        ("clusters.0.cluster", [], "`cluster` must be a mapping"),
        ("clusters.0.cluster.server", _DELETE, "cluster 'c': `server` is missing"),
        ("clusters.0.cluster.server", "127.0.0.1:6443", "`server` must be an http"),
        ("clusters.0.cluster.server", 6443, "`server` must be a string"),
        ("clusters.0.cluster.certificate-authority-data", "!!", "not valid base64"),
        ("clusters.0.cluster.insecure-skip-tls-verify", "yes", "must be true or false"),
        ("users.0.user", {"token": 5}, "user 'u': `token` must be a string"),
        ("users.0.user", {"client-certificate": "c"}, "needs both `client-certificate"),
        ("users.0.user", {"client-key-data": b64("k")}, "needs both `client-certificate"),
        ("users.0.user", {"username": "a"}, "needs both `username` and `password`"),
        ("users.0.user", {"exec": "aws"}, "`exec` must be a mapping"),
        ("users.0.user", {"exec": {"apiVersion": kc.EXEC_API_VERSIONS[0]}}, "`command`"),
        ("users.0.user", {"exec": {"command": "x"}}, "`apiVersion` None is not supported"),
        (
            "users.0.user",
            {"exec": {"command": "x", "apiVersion": "client.authentication.k8s.io/v1alpha1"}},
            "is not supported",
        ),
        (
            "users.0.user",
            {"exec": {"command": "x", "apiVersion": kc.EXEC_API_VERSIONS[0], "args": "a"}},
            "`args` must be a list of strings",
        ),
        (
            "users.0.user",
            {"exec": {"command": "x", "apiVersion": kc.EXEC_API_VERSIONS[0], "env": [{"a": 1}]}},
            r"env\[0\] needs both",
        ),
        (
            "users.0.user",
            {"exec": {"command": "x", "apiVersion": kc.EXEC_API_VERSIONS[0], "env": {}}},
            "`env` must be a list",
        ),
        (
            "users.0.user",
            {
                "exec": {
                    "command": "x",
                    "apiVersion": kc.EXEC_API_VERSIONS[0],
                    "provideClusterInfo": "no",
                }
            },
            "`provideClusterInfo` must be true or false",
        ),
        ("contexts.0.context.cluster", _DELETE, "context 'ctx': `cluster` is missing"),
        ("contexts.0.context.cluster", "nope", "cluster 'nope' is not defined"),
        ("contexts.0.context.user", "nope", "user 'nope' is not defined"),
        ("current-context", "nope", "context 'nope' is not defined"),
        ("current-context", _DELETE, "no `current-context` set"),
        ("current-context", ["a"], "`current-context` must be a string"),
    ],
)
def test_rejects_invalid_kubeconfigs_naming_the_file_and_key(
    tmp_path: Path, dotted: str, value: Any, message: str
) -> None:
    path = write(tmp_path / "config", _set(doc(), dotted, value))
    with pytest.raises(KubeError, match=message) as info:
        resolve(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [("a: [", "not valid YAML"), ("- 1\n", "must be a mapping, not list")],
    ids=["broken-yaml", "not-a-mapping"],
)
def test_rejects_unreadable_documents(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config"
    path.write_text(text)
    with pytest.raises(KubeError, match=message) as info:
        kc.read_kubeconfig([path], explicit=True)
    assert str(path) in str(info.value)


def test_an_explicit_missing_file_is_an_error_and_a_missing_list_entry_is_not(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(KubeError, match=f"kubeconfig {missing} does not exist"):
        kc.read_kubeconfig([missing], explicit=True)
    with pytest.raises(KubeError, match="no kubeconfig found"):
        kc.read_kubeconfig([missing], explicit=False)


def test_auth_provider_is_reported_as_unsupported(tmp_path: Path) -> None:
    path = write(tmp_path / "config", doc(user={"auth-provider": {"name": "oidc"}}))
    with pytest.raises(kc.UnsupportedCredentials, match="`auth-provider`") as info:
        resolve(path)
    assert str(path) in str(info.value)


def test_an_empty_file_merges_to_nothing(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("")
    with pytest.raises(KubeError, match="no context given"):
        resolve(path)


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=12), st.floats(allow_nan=False)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
_keys = st.sampled_from(
    [
        "server",
        "certificate-authority",
        "certificate-authority-data",
        "insecure-skip-tls-verify",
        "tls-server-name",
        "client-certificate",
        "client-key",
        "client-certificate-data",
        "client-key-data",
        "token",
        "tokenFile",
        "username",
        "password",
        "exec",
        "auth-provider",
        "cluster",
        "user",
        "name",
    ]
)
_entry = st.fixed_dictionaries(
    {"name": st.one_of(st.sampled_from(["c", "u", "ctx"]), _values)},
    optional={
        "cluster": st.dictionaries(_keys, _values, max_size=4),
        "user": st.dictionaries(_keys, _values, max_size=4),
        "context": st.dictionaries(_keys, st.one_of(st.sampled_from(["c", "u"]), _values)),
    },
)
_documents = st.one_of(
    _values,
    st.fixed_dictionaries(
        {},
        optional={
            "clusters": st.one_of(st.lists(_entry, max_size=2), _values),
            "users": st.one_of(st.lists(_entry, max_size=2), _values),
            "contexts": st.one_of(st.lists(_entry, max_size=2), _values),
            "current-context": st.one_of(st.just("ctx"), _values),
        },
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_documents)
def test_arbitrary_yaml_fails_only_with_kube_error(body: Any) -> None:
    source = Path("/nonexistent/config")
    message = ""
    try:
        parsed = kc.parse_kubeconfig_document(yaml.safe_dump(body), source=source)
        kc.credentials_from_context(kc.resolve_context(kc.merge_kubeconfigs([(source, parsed)])))
    except KubeError as exc:
        message = str(exc) or "<empty>"
    assert message != "<empty>"


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_arbitrary_text_fails_only_with_kube_error(text: str) -> None:
    with contextlib.suppress(KubeError):
        kc.parse_kubeconfig_document(text, source=Path("/x"))


# -- exec plugins ------------------------------------------------------------------------------


def plugin(tmp_path: Path, body: str) -> Path:
    """A tiny exec plugin: a Python script that counts its runs in `runs` next to it."""
    script = tmp_path / "plugin.py"
    script.write_text(
        f"#!{sys.executable}\n"
        + textwrap.dedent(
            """
            import json, os, pathlib, sys
            here = pathlib.Path(__file__).parent
            runs = here / "runs"
            n = int(runs.read_text()) + 1 if runs.exists() else 1
            runs.write_text(str(n))
            info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
            (here / "info.json").write_text(json.dumps(info))
            """
        )
        + textwrap.dedent(body)
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def exec_user(script: Path, **extra: Any) -> dict[str, Any]:
    return {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": str(script),
            "args": ["--flag"],
            "env": [{"name": "PLUGIN_TOKEN", "value": "from-env"}],
            **extra,
        }
    }


_TOKEN_PLUGIN = """
print(json.dumps({
    "apiVersion": info["apiVersion"],
    "kind": "ExecCredential",
    "status": {
        "token": os.environ["PLUGIN_TOKEN"] + "-" + str(n) + sys.argv[1],
        "expirationTimestamp": (here / "expiry").read_text(),
    },
}))
"""


def _stamp(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_exec_plugin_token_is_cached_until_expiry_then_rerun(tmp_path: Path) -> None:
    script = plugin(tmp_path, _TOKEN_PLUGIN)
    now = [1_000_000.0]
    (tmp_path / "expiry").write_text(_stamp(now[0] + 600))
    resolved = resolve(write(tmp_path / "config", doc(user=exec_user(script))))
    assert resolved.exec is not None
    auth = kc.ExecAuth(
        resolved.exec, server=resolved.server, tls=resolved.tls, clock=lambda: now[0]
    )

    assert await auth.headers() == {"Authorization": "Bearer from-env-1--flag"}
    assert await auth.headers() == {"Authorization": "Bearer from-env-1--flag"}
    assert auth.runs == 1
    info = json.loads((tmp_path / "info.json").read_text())
    assert info == {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "spec": {"interactive": False},
    }

    now[0] += 600
    assert await auth.headers() == {"Authorization": "Bearer from-env-2--flag"}
    assert auth.runs == 2


async def test_exec_plugin_is_rerun_after_a_401(tmp_path: Path) -> None:
    script = plugin(tmp_path, _TOKEN_PLUGIN)
    (tmp_path / "expiry").write_text("2999-01-01T00:00:00Z")
    creds = kc.credentials_from_context(
        resolve(write(tmp_path / "config", doc(user=exec_user(script))))
    )
    assert await creds.auth.headers() == {"Authorization": "Bearer from-env-1--flag"}
    assert creds.auth.invalidate()
    assert await creds.auth.headers() == {"Authorization": "Bearer from-env-2--flag"}


async def test_exec_plugin_gets_cluster_info_when_it_asks(tmp_path: Path) -> None:
    script = plugin(tmp_path, _TOKEN_PLUGIN)
    (tmp_path / "expiry").write_text("2999-01-01T00:00:00Z")
    body = doc(
        cluster={"server": "https://h:1", "certificate-authority-data": b64("CA")},
        user=exec_user(script, provideClusterInfo=True, apiVersion=kc.EXEC_API_VERSIONS[1]),
    )
    creds = kc.credentials_from_context(resolve(write(tmp_path / "config", body)))
    await creds.auth.headers()
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["apiVersion"] == "client.authentication.k8s.io/v1beta1"
    assert info["spec"]["cluster"] == {
        "server": "https://h:1",
        "insecure-skip-tls-verify": False,
        "certificate-authority-data": b64("CA"),
    }


def test_exec_command_with_a_relative_path_is_relative_to_the_kubeconfig(tmp_path: Path) -> None:
    body = doc(user={"exec": {"apiVersion": kc.EXEC_API_VERSIONS[0], "command": "./bin/p"}})
    resolved = resolve(write(tmp_path / "conf" / "config", body))
    assert resolved.exec is not None
    assert resolved.exec.command == str(tmp_path / "conf" / "bin" / "p")
    bare = doc(user={"exec": {"apiVersion": kc.EXEC_API_VERSIONS[0], "command": "aws"}})
    found = resolve(write(tmp_path / "config", bare)).exec
    assert found is not None
    assert found.command == "aws"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("sys.stderr.write('denied by policy'); sys.exit(3)", "exited with status 3: denied by"),
        ("print('not json')", "printed no ExecCredential JSON"),
        ("print(json.dumps({'kind': 'Other'}))", "not an ExecCredential"),
        (
            "print(json.dumps({'kind': 'ExecCredential', 'apiVersion': 'x', 'status': {}}))",
            "answered with apiVersion 'x'",
        ),
        (
            "print(json.dumps({'kind': 'ExecCredential', 'apiVersion': info['apiVersion']}))",
            "has no `status`",
        ),
        (
            "print(json.dumps({'kind': 'ExecCredential', 'apiVersion': info['apiVersion'],"
            " 'status': {}}))",
            "neither a token nor a client certificate",
        ),
        (
            "print(json.dumps({'kind': 'ExecCredential', 'apiVersion': info['apiVersion'],"
            " 'status': {'clientCertificateData': 'c'}}))",
            "come together",
        ),
        (
            "print(json.dumps({'kind': 'ExecCredential', 'apiVersion': info['apiVersion'],"
            " 'status': {'token': 't', 'expirationTimestamp': 'soon'}}))",
            "is not RFC 3339",
        ),
    ],
    ids=[
        "exit-status",
        "not-json",
        "wrong-kind",
        "wrong-version",
        "no-status",
        "empty-status",
        "cert-without-key",
        "bad-expiry",
    ],
)
async def test_a_failing_exec_plugin_is_a_clear_error(
    tmp_path: Path, body: str, message: str
) -> None:
    script = plugin(tmp_path, body)
    creds = kc.credentials_from_context(
        resolve(write(tmp_path / "config", doc(user=exec_user(script))))
    )
    with pytest.raises(KubeError, match=message) as info:
        await creds.prepare()
    assert str(script) in str(info.value)


async def test_an_exec_plugin_that_cannot_start_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-plugin"
    creds = kc.credentials_from_context(
        resolve(write(tmp_path / "config", doc(user=exec_user(missing))))
    )
    with pytest.raises(KubeError, match="cannot be started") as info:
        await creds.auth.headers()
    assert "user 'u'" in str(info.value)


# -- TLS material --------------------------------------------------------------------------------


def test_client_certificate_data_is_loaded_and_its_temp_files_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moorage_core.tls import build_self_signed

    pair = build_self_signed(hosts=["localhost"], common_name="client")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(kc.tempfile, "tempdir", None)
    ctx = kc.build_ssl_context(
        kc.TLSSettings(ca_data=pair.cert_pem, cert_data=pair.cert_pem, key_data=pair.key_pem)
    )
    assert ctx.cert_store_stats()["x509"] >= 1
    assert list(tmp_path.iterdir()) == []


def test_unloadable_tls_material_is_a_kube_error(tmp_path: Path) -> None:
    with pytest.raises(KubeError, match="cannot load TLS material"):
        kc.build_ssl_context(kc.TLSSettings(ca_file=tmp_path / "missing.crt"))
    with pytest.raises(KubeError, match="cannot load TLS material"):
        kc.build_ssl_context(kc.TLSSettings(cert_data=b"junk", key_data=b"junk"))


# -- in cluster --------------------------------------------------------------------------------


def test_in_cluster_reads_the_service_account(tmp_path: Path) -> None:
    from moorage_core.tls import build_self_signed

    (tmp_path / "token").write_text("sa-token\n")
    (tmp_path / "ca.crt").write_bytes(build_self_signed(hosts=["ca"], common_name="ca").cert_pem)
    (tmp_path / "namespace").write_text("moorage-system")
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert kc.is_in_cluster(environ=env, account_dir=tmp_path)
    creds = kc.in_cluster_credentials(environ=env, account_dir=tmp_path)
    assert creds.host == "https://10.0.0.1:443"
    assert creds.tls.ca_file == tmp_path / "ca.crt"
    assert isinstance(creds.auth, kc.TokenFileAuth)
    assert creds.auth.current() == "sa-token"
    assert kc.in_cluster_namespace(account_dir=tmp_path) == "moorage-system"
    creds.ssl_context()
    ipv6 = kc.in_cluster_credentials(
        environ={**env, "KUBERNETES_SERVICE_HOST": "fd00::1"}, account_dir=tmp_path
    )
    assert ipv6.host == "https://[fd00::1]:443"


@pytest.mark.parametrize(
    ("env", "files", "message"),
    [
        ({}, ["token", "ca.crt"], "KUBERNETES_SERVICE_HOST/PORT are not set"),
        ({"KUBERNETES_SERVICE_HOST": "h"}, ["token", "ca.crt"], "are not set"),
        ({"KUBERNETES_SERVICE_HOST": "h", "KUBERNETES_SERVICE_PORT": "1"}, ["ca.crt"], "token"),
        ({"KUBERNETES_SERVICE_HOST": "h", "KUBERNETES_SERVICE_PORT": "1"}, ["token"], "ca.crt"),
    ],
    ids=["no-host", "no-port", "no-token", "no-ca"],
)
def test_in_cluster_rejections(
    tmp_path: Path, env: dict[str, str], files: list[str], message: str
) -> None:
    for name in files:
        (tmp_path / name).write_text("x")
    with pytest.raises(KubeError, match=message):
        kc.in_cluster_credentials(environ=env, account_dir=tmp_path)
    assert kc.in_cluster_namespace(account_dir=tmp_path) is None


# -- the kubernetes_asyncio fallback -------------------------------------------------------------


def _jwt(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


async def test_an_auth_provider_user_falls_back_to_kubernetes_asyncio(tmp_path: Path) -> None:
    from moorage_core.kube import load_configuration

    token = _jwt({"sub": "ann", "exp": 32503680000})
    user = {"auth-provider": {"name": "oidc", "config": {"id-token": token}}}
    path = write(tmp_path / "config", doc(user=user))
    creds = await load_configuration(kubeconfig=str(path))
    assert creds.host == "https://127.0.0.1:6443"
    assert await creds.auth.headers() == {"Authorization": f"Bearer {token}"}


async def test_a_failing_fallback_says_why_it_fell_back_and_what_failed(tmp_path: Path) -> None:
    from moorage_core.kube import load_configuration

    user = {"auth-provider": {"name": "oidc", "config": {}}}
    path = write(tmp_path / "config", doc(user=user))
    with pytest.raises(KubeError) as info:
        await (await load_configuration(kubeconfig=str(path))).auth.headers()
    message = str(info.value)
    assert "`auth-provider` plugins are not supported natively" in message
    assert "loading it with kubernetes_asyncio failed" in message
    assert str(path) in message
