"""devspace.yaml loading: a table of invalid files with the exact one-line error (through the CLI,
exit code 2), and valid files with their resolved defaults and SyncSpecs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podsync.cli.app import run_cli
from podsync.cli.specs import to_sync_specs
from podsync.config import ProjectConfig, load_config, load_text
from podsync.config.checks import validate_pattern
from podsync.errors import ConfigError

SPEC_HEAD = """\
images:
  backend:
    image: john/devbackend
  backend-debugger:
    image: john/debugger
deployments:
- name: app-backend
  component:
    containers:
    - name: container-0
      image: john/devbackend
    - name: container-1
      image: john/debugger
"""


@dataclass(frozen=True)
class Bad:
    id: str
    text: str
    message: str  # the whole stderr line, without the trailing newline


def _sync(body: str, head: str = "") -> str:
    return head + "dev:\n  sync:\n" + body


BAD = [
    Bad(
        "imageName-with-labelSelector",
        _sync("  - imageName: backend\n    labelSelector:\n      app: web\n", SPEC_HEAD),
        "devspace.yaml:17:5: dev.sync[0].labelSelector: cannot be combined with imageName; "
        "keep one of them to select the container",
    ),
    Bad(
        "imageName-undefined-close",
        _sync("  - imageName: backnd\n", SPEC_HEAD),
        'devspace.yaml:16:16: dev.sync[0].imageName: image "backnd" is not defined under '
        'images; did you mean "backend"?',
    ),
    Bad(
        "imageName-undefined-far",
        _sync("  - imageName: frontend\n", SPEC_HEAD),
        'devspace.yaml:16:16: dev.sync[0].imageName: image "frontend" is not defined under '
        "images; defined images: backend, backend-debugger",
    ),
    Bad(
        "imageName-no-images",
        _sync("  - imageName: web\n"),
        'devspace.yaml:3:16: dev.sync[0].imageName: image "web" is not defined: '
        "add it under images",
    ),
    Bad(
        "imageName-shared-by-two-deployments",
        "images:\n  api:\n    image: acme/api:1.0\ndeployments:\n"
        "- name: one\n  component:\n    containers:\n    - image: acme/api\n"
        "- name: two\n  component:\n    containers:\n    - image: acme/api:2.0\n"
        + _sync("  - imageName: api\n"),
        'devspace.yaml:15:16: dev.sync[0].imageName: image "acme/api:1.0" is used by 2 '
        "deployments (one, two), so imageName cannot choose one container; use labelSelector "
        "with containerName instead",
    ),
    Bad(
        "containerName-with-imageName",
        _sync("  - imageName: backend\n    containerName: container-0\n", SPEC_HEAD),
        "devspace.yaml:17:5: dev.sync[0].containerName: only works together with labelSelector "
        "(imageName already selects the container); remove containerName or use labelSelector",
    ),
    Bad(
        "no-selector",
        _sync("  - localSubPath: ./\n"),
        "devspace.yaml:3:5: dev.sync[0]: no container selected; add imageName: "
        "<name under images> or labelSelector: {label: value}",
    ),
    Bad(
        "empty-labelSelector",
        _sync("  - labelSelector: {}\n"),
        "devspace.yaml:3:20: dev.sync[0].labelSelector: is empty; add at least one label: value",
    ),
    Bad(
        "containerPath-relative",
        _sync("  - labelSelector: {app: web}\n    containerPath: app/src\n"),
        'devspace.yaml:4:20: dev.sync[0].containerPath: "app/src" is not an absolute path; '
        "write the full container path, e.g. /app/src",
    ),
    Bad(
        "localSubPath-missing",
        _sync("  - labelSelector: {app: web}\n    localSubPath: ./nope\n"),
        'devspace.yaml:4:19: dev.sync[0].localSubPath: folder "./nope" does not exist next to '
        "devspace.yaml; create it or fix the path",
    ),
    Bad(
        "localSubPath-outside",
        _sync("  - labelSelector: {app: web}\n    localSubPath: ../\n"),
        'devspace.yaml:4:19: dev.sync[0].localSubPath: "../" points outside the project folder '
        "(the one holding devspace.yaml); use a path inside it",
    ),
    Bad(
        "localSubPath-file",
        _sync("  - labelSelector: {app: web}\n    localSubPath: app.py\n"),
        'devspace.yaml:4:19: dev.sync[0].localSubPath: "app.py" is a file; localSubPath must '
        "be a folder",
    ),
    Bad(
        "exclude-lone-bang",
        _sync("  - labelSelector: {app: web}\n    excludePaths:\n    - logs/\n    - '!'\n"),
        f'devspace.yaml:6:7: dev.sync[0].excludePaths[1]: invalid exclude pattern "!": '
        f"{validate_pattern('!')}",
    ),
    Bad(
        "bandwidth-negative",
        _sync("  - labelSelector: {app: web}\n    bandwidthLimits:\n      upload: -5\n"),
        "devspace.yaml:5:15: dev.sync[0].bandwidthLimits.upload: must be a positive whole "
        "number of KB/s (1 KB = 1024 bytes), got the number -5; e.g. upload: 100, or remove it "
        "for no limit",
    ),
    Bad(
        "bandwidth-zero",
        _sync("  - labelSelector: {app: web}\n    bandwidthLimits:\n      download: 0\n"),
        "devspace.yaml:5:17: dev.sync[0].bandwidthLimits.download: must be a positive whole "
        "number of KB/s (1 KB = 1024 bytes), got the number 0; e.g. download: 100, or remove it "
        "for no limit",
    ),
    Bad(
        "bandwidth-bool-is-not-int",
        _sync("  - labelSelector: {app: web}\n    bandwidthLimits:\n      download: true\n"),
        "devspace.yaml:5:17: dev.sync[0].bandwidthLimits.download: must be a positive whole "
        "number of KB/s (1 KB = 1024 bytes), got the boolean true; e.g. download: 100, or "
        "remove it for no limit",
    ),
    Bad(
        "bandwidth-float",
        _sync("  - labelSelector: {app: web}\n    bandwidthLimits:\n      upload: 1.5\n"),
        "devspace.yaml:5:15: dev.sync[0].bandwidthLimits.upload: must be a positive whole "
        "number of KB/s (1 KB = 1024 bytes), got the number 1.5; e.g. upload: 100, or remove "
        "it for no limit",
    ),
    Bad(
        "unknown-option-did-you-mean",
        _sync("  - labelSelector: {app: web}\n    exludePaths: [logs/]\n"),
        'devspace.yaml:4:5: dev.sync[0].exludePaths: unknown option "exludePaths"; '
        'did you mean "excludePaths"?',
    ),
    Bad(
        "unknown-option-case",
        _sync("  - labelSelector: {app: web}\n    containerpath: /app\n"),
        'devspace.yaml:4:5: dev.sync[0].containerpath: unknown option "containerpath"; '
        'did you mean "containerPath"?',
    ),
    Bad(
        "unknown-option-no-guess",
        _sync("  - labelSelector: {app: web}\n    zzz: 1\n"),
        'devspace.yaml:4:5: dev.sync[0].zzz: unknown option "zzz"; valid options are: '
        "imageName, labelSelector, containerName, namespace, localSubPath, containerPath, "
        "excludePaths, downloadExcludePaths, uploadExcludePaths, downloadOnInitialSync, "
        "waitInitialSync, bandwidthLimits, onUpload",
    ),
    Bad(
        "unknown-bandwidth-option",
        _sync("  - labelSelector: {app: web}\n    bandwidthLimits:\n      uplaod: 10\n"),
        'devspace.yaml:5:7: dev.sync[0].bandwidthLimits.uplaod: unknown option "uplaod"; '
        'did you mean "upload"?',
    ),
    Bad(
        "excludePaths-string",
        _sync("  - labelSelector: {app: web}\n    excludePaths: node_modules/\n"),
        'devspace.yaml:4:19: dev.sync[0].excludePaths: expected a list (one "- item" per '
        'line), got the string "node_modules/"; write it as a list: ["node_modules/"]',
    ),
    Bad(
        "label-value-number",
        _sync("  - labelSelector:\n      version: 2\n"),
        "devspace.yaml:4:16: dev.sync[0].labelSelector.version: expected a string, got the "
        "number 2; write it in quotes",
    ),
    Bad(
        "bool-option-string",
        _sync("  - labelSelector: {app: web}\n    waitInitialSync: 'yes'\n"),
        "devspace.yaml:4:22: dev.sync[0].waitInitialSync: expected true or false, got the "
        'string "yes"',
    ),
    Bad(
        "second-entry-is-reported-with-its-index",
        _sync("  - labelSelector: {app: web}\n  - labelSelector: {app: api}\n    namespace: 7\n"),
        "devspace.yaml:5:16: dev.sync[1].namespace: expected a string, got the number 7; "
        "write it in quotes",
    ),
    Bad(
        "sync-not-a-list",
        "dev:\n  sync:\n    labelSelector: {app: web}\n",
        'devspace.yaml:3:5: dev.sync: expected a list (one "- item" per line), got a mapping',
    ),
    Bad(
        "image-without-image",
        "images:\n  backend:\n    dockerfile: ./Dockerfile\n",
        'devspace.yaml:2:3: images.backend.image: required option "image" is missing; add it',
    ),
    Bad(
        "top-level-list",
        "- dev\n- sync\n",
        "devspace.yaml:1:1: expected a mapping at the top level (images:, deployments:, dev:), "
        "got a list",
    ),
    Bad(
        "yaml-syntax-indentation",
        "dev:\n  sync:\n  - labelSelector: {app: web}\n   containerPath: /app\n",
        "devspace.yaml:4:4: YAML syntax error: expected <block end>, but found "
        "'<block mapping start>'; fix the indentation or quoting",
    ),
    Bad(
        "yaml-duplicate-key",
        "dev:\n  sync: []\n  sync: []\n",
        'devspace.yaml:3:3: YAML syntax error: found duplicate key "sync" with value "[]" '
        '(original value: "[]"); fix the indentation or quoting',
    ),
    Bad(
        "yaml-two-documents",
        "dev: {}\n---\ndev: {}\n",
        "devspace.yaml:2:1: YAML syntax error: expected a single document in the stream but "
        "found another document; keep a single YAML document (remove the extra ---)",
    ),
    Bad(
        "date-is-not-a-string",
        _sync("  - labelSelector: {app: web}\n    localSubPath: 2024-01-01\n"),
        "devspace.yaml:4:19: dev.sync[0].localSubPath: expected a string, got a date; "
        "write it in quotes",
    ),
    Bad(
        "nul-in-containerPath",
        _sync('  - labelSelector: {app: web}\n    containerPath: "/a\\0b"\n'),
        "devspace.yaml:4:20: dev.sync[0].containerPath: contains a NUL character; remove it",
    ),
    Bad(
        "yaml-value-ruamel-cannot-build",
        _sync("  - labelSelector: {app: web}\n    namespace: ._\n"),
        "devspace.yaml:4:16: YAML value '._' cannot be read (could not convert string to "
        "float: '.'); put it in quotes",
    ),
    Bad(
        "yaml-unclosed-flow",
        "dev:\n  sync: [\n",
        "devspace.yaml:3:1: YAML syntax error: expected the node content, but found "
        "'<stream end>'; fix the indentation or quoting",
    ),
]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder (cwd) with one file and one folder to point at."""
    (tmp_path / "app.py").write_text("print('hi')\n")
    (tmp_path / "src").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_invalid_config_is_one_exact_line_and_exit_2(
    case: Bad, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "devspace.yaml").write_text(case.text)
    code = run_cli(["list", "sync"])
    out, err = capsys.readouterr()
    assert (code, err, out) == (2, case.message + "\n", "")


def test_table_has_enough_cases() -> None:
    assert len(BAD) >= 15
    assert len({c.message for c in BAD}) == len(BAD)


def test_missing_file(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli(["dev"])
    assert (code, capsys.readouterr().err) == (
        2,
        "devspace.yaml: file not found; run podsync in the folder that holds devspace.yaml "
        "or pass --config FILE\n",
    )


def test_config_flag_names_file_as_given(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "conf").mkdir()
    (project / "conf" / "my.yaml").write_text(_sync("  - labelSelector: {app: web}\n    x: 1\n"))
    code = run_cli(["list", "sync", "--config", "conf/my.yaml"])
    assert code == 2
    assert capsys.readouterr().err.startswith("conf/my.yaml:4:5: dev.sync[0].x: unknown option")


@pytest.mark.parametrize("case", [BAD[0], BAD[12], BAD[-1]], ids=lambda c: c.id)
def test_real_process_prints_no_traceback(case: Bad, project: Path) -> None:
    (project / "devspace.yaml").write_text(case.text)
    done = subprocess.run(
        [sys.executable, "-m", "podsync", "dev"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert (done.returncode, done.stderr, done.stdout) == (2, case.message + "\n", "")


# ---------------------------------------------------------------- valid files


def _load(project: Path, text: str) -> ProjectConfig:
    (project / "devspace.yaml").write_text(text)
    return load_config(Path("devspace.yaml"))


def test_defaults_of_a_minimal_entry(project: Path) -> None:
    cfg = _load(project, _sync("  - labelSelector:\n      app: web\n"))
    (entry,) = cfg.sync
    assert entry.label_selector == {"app": "web"}
    assert entry.local_sub_path == "./"
    assert entry.container_path is None
    assert (entry.exclude_paths, entry.download_exclude_paths, entry.upload_exclude_paths) == (
        [],
        [],
        [],
    )
    assert entry.download_on_initial_sync is False
    assert entry.wait_initial_sync is False
    assert entry.bandwidth_limits is None
    assert entry.image_name is entry.container_name is entry.namespace is None
    assert cfg.path == project / "devspace.yaml"
    assert cfg.display == "devspace.yaml"
    assert cfg.sync_positions == ((3, 5),)


def test_spec_example_to_sync_specs(project: Path) -> None:
    (project / "debug-logs").mkdir()
    text = SPEC_HEAD + _sync(
        "  - imageName: backend\n"
        "    excludePaths: [node_modules/, logs/]\n"
        "    uploadExcludePaths: [node_modules/]\n"
        "    downloadExcludePaths: [tmp/]\n"
        "    downloadOnInitialSync: true\n"
        "    waitInitialSync: true\n"
        "    bandwidthLimits: {download: 200, upload: 100}\n"
        "  - labelSelector: {app.kubernetes.io/component: app-backend}\n"
        "    containerName: container-1\n"
        "    namespace: dev\n"
        "    localSubPath: ./debug-logs\n"
        "    containerPath: /logs\n"
    )
    cfg = _load(project, text)
    state = project / ".devspace"
    first, second = to_sync_specs(cfg, state)
    assert first.name == "sync-0" and second.name == "sync-1"
    assert first.local_root == project.resolve()
    assert first.target.kind == "kubernetes"
    assert (first.target.image_name, first.target.image_ref) == ("backend", "john/devbackend")
    assert first.target.label_selector is None
    assert first.container_path is None
    assert first.exclude == ("node_modules/", "logs/")
    assert first.upload_exclude == ("node_modules/",)
    assert first.download_exclude == ("tmp/",)
    assert first.download_on_initial_sync and first.wait_initial_sync
    assert (first.bandwidth_download, first.bandwidth_upload) == (200 * 1024, 100 * 1024)
    assert first.state_dir == state
    assert second.local_root == (project / "debug-logs").resolve()
    assert second.target.label_selector == {"app.kubernetes.io/component": "app-backend"}
    assert (second.target.container, second.target.namespace) == ("container-1", "dev")
    assert second.target.image_name is None and second.container_path == "/logs"
    assert (second.bandwidth_download, second.bandwidth_upload) == (None, None)
    assert not second.download_on_initial_sync


REAL_PROJECT = """\
version: v1beta9
vars:
- name: REGISTRY
  question: Which registry?
images:
  app:
    image: ${REGISTRY}/app
    dockerfile: ./Dockerfile
    build:
      docker:
        skipPush: true
deployments:
- name: db
  helm:
    chart:
      name: stable/mysql
- name: manifests
  kubectl:
    manifests: [kube/]
- name: app
  component:
    containers:
    - image: ${REGISTRY}/app
    service:
      ports: [{port: 3000}]
dev:
  ports:
  - imageName: app
    forward: [{port: 3000}]
  open:
  - url: http://localhost:3000
  interactive:
    images: [{name: app}]
  sync:
  - imageName: app
    excludePaths: [node_modules/]
hooks:
- command: echo
  when: {before: {deployments: all}}
profiles:
- name: production
  patches: [{op: remove, path: dev}]
commands:
- name: migrate
  command: npm run migrate
dependencies:
- source: {path: ../other}
"""


def test_real_project_with_unused_sections_loads(project: Path) -> None:
    cfg = _load(project, REAL_PROJECT)
    assert [d.name for d in cfg.deployments] == ["db", "manifests", "app"]
    assert cfg.deployments[0].component is None
    (spec,) = to_sync_specs(cfg, project / ".devspace")
    assert spec.target.image_ref == "${REGISTRY}/app"
    assert spec.exclude == ("node_modules/",)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "dev:\n", "dev:\n  sync:\n"])
def test_empty_sections_mean_no_sync(project: Path, text: str) -> None:
    assert _load(project, text).sync == ()


def test_image_tag_does_not_make_it_ambiguous(project: Path) -> None:
    text = (
        "images:\n  api:\n    image: reg:5000/acme/api:dev\ndeployments:\n"
        "- name: one\n  component:\n    containers:\n    - image: reg:5000/acme/api@sha256:ab\n"
        "- name: two\n  component:\n    containers:\n    - image: reg:5000/acme/web\n"
    )
    cfg = _load(project, text + _sync("  - imageName: api\n"))
    assert cfg.sync[0].image_name == "api"


def test_localsubpath_through_symlink_inside_project_is_fine(project: Path) -> None:
    (project / "link").symlink_to(project / "src")
    cfg = _load(project, _sync("  - labelSelector: {app: web}\n    localSubPath: link\n"))
    assert cfg.local_path(cfg.sync[0]) == (project / "src").resolve()


def test_symlink_leaving_project_is_outside(
    project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (project / "out").symlink_to(elsewhere)
    with pytest.raises(ConfigError, match=r"^devspace.yaml:4:19: dev.sync\[0\].localSubPath: "):
        _load(project, _sync("  - labelSelector: {app: web}\n    localSubPath: out\n"))


YAMLISH = "ab:-_ \n\t{}[],'\"#&*!|>%@`0\x00/.~"


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=YAMLISH, max_size=60))
def test_any_text_loads_or_fails_with_one_line(text: str) -> None:
    """Whatever the bytes, the loader answers with a config or one ConfigError line."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            load_text(text, Path(tmp) / "devspace.yaml", "devspace.yaml")
        except ConfigError as err:
            assert "\n" not in str(err)
            assert str(err).startswith("devspace.yaml:")


@settings(max_examples=200, deadline=None)
@given(
    key=st.sampled_from(
        [
            "imageName",
            "labelSelector",
            "localSubPath",
            "containerPath",
            "excludePaths",
            "bandwidthLimits",
            "waitInitialSync",
            "namespace",
        ]
    ),
    value=st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.text(max_size=8),
        st.lists(st.text(max_size=4), max_size=2),
        st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    ),
)
def test_any_option_value_is_accepted_or_one_line(key: str, value: object) -> None:
    """Every option with a value of any YAML type: loads, or one line naming that option."""
    entry: dict[str, object] = {"labelSelector": {"app": "web"}}
    entry[key] = value
    text = json.dumps({"images": {"web": {"image": "w"}}, "dev": {"sync": [entry]}})
    with tempfile.TemporaryDirectory() as tmp:
        try:
            load_text(text, Path(tmp) / "devspace.yaml", "devspace.yaml")
        except ConfigError as err:
            assert "\n" not in str(err)
            assert re.match(r"^devspace\.yaml:1:\d+: dev\.sync\[0\]", str(err)), str(err)
