"""The layering rules of ARCHITECTURE.md, read off the source with ast so that they cannot silently rot: data flows
config -> cells -> languages -> data -> models -> probes -> rows -> report, and no module imports upwards."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
# Each package may import only from the packages at or below its own layer.
LAYERS = ["languages", "data", "models", "probes", "harness", "report", "satbench"]


def modules():
    """{dotted module name: path} of every module in the layered packages, by its installed name (satbench.models.x
    for models/x.py)."""
    out = {}
    for package in LAYERS:
        dotted = "satbench" if package == "satbench" else f"satbench.{package}"
        for path in sorted((REPO / package).glob("*.py")):
            name = dotted if path.stem == "__init__" else f"{dotted}.{path.stem}"
            out[name] = path
    return out


def imports_of(name, path):
    """Every module of ours that `name` imports, at the top or inside a function, relative imports resolved."""
    package = name if path.stem == "__init__" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from probes import heads` imports a module
    known = modules()
    return {module for module in found if module in known and module != name}


def graph():
    return {name: imports_of(name, path) for name, path in modules().items()}


def layer(module):
    parts = module.split(".")
    return LAYERS.index(parts[1] if len(parts) > 1 and parts[1] in LAYERS else "satbench")


def test_the_graph_is_read_at_all():
    edges = graph()
    assert "satbench.models.train" in edges["satbench.harness.run"]
    assert "satbench.harness.results" in edges["satbench.report.write"]


def test_no_module_imports_from_a_higher_layer():
    upward = [f"{a} -> {b}" for a, targets in graph().items() for b in targets if layer(b) > layer(a)]
    assert not upward, upward


def test_no_import_circle():
    edges = graph()
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                pytest.fail("import circle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])


@pytest.mark.xdist_group("fresh_interpreter")
def test_the_report_reads_rows_without_torch_or_the_run_loop(fresh_interpreter):
    found, _ = fresh_interpreter
    assert found["report"] == [], "importing the report brought in torch or the run loop"


def registered_names():
    from satbench import languages

    return languages.language_names()


def test_no_language_name_in_probes_models_or_the_bench():
    """Language knowledge lives on the languages: no string literal in these packages names a language, and no name
    that is not also an English word (dyck1, anbn, tomita3, ...) appears anywhere in their text. The hand-built
    constructions are the exception: they are built for particular languages."""
    names = set(registered_names())
    unmistakable = {n for n in names if re.search(r"\d|_|^anbn", n)}
    assert {"dyck1", "anbn", "tomita3", "ab_star"} <= unmistakable
    found = []
    for module, path in modules().items():
        if (not module.startswith(("satbench.probes", "satbench.models", "satbench.harness", "satbench.report"))
                or module == "satbench.models.constructions"):
            continue
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: the string {node.value!r}")
        for number, line in enumerate(text.splitlines(), 1):
            for name in unmistakable:
                if re.search(rf"\b{name}\b", line):
                    found.append(f"{path.relative_to(REPO)}:{number}: {name}")
    assert not found, found


# --- one namespace, light entry points ----------------------------------------------------------------------------

# Run in a fresh interpreter from a folder that has a `models` package of its own, as a user's project would: the light
# commands first, then the report's modules (whose pandas and matplotlib would hide a light command's heavy import),
# then the namespace, which imports our models and with them torch.
FRESH = r"""
import contextlib, io, json, sys
from satbench.cli import main

HEAVY = ("torch", "sklearn", "pandas", "matplotlib", "scipy")
loaded = {}
for line in (["--version"], ["--help"], ["languages", "list"], ["languages", "sample", "majority", "-l", "4"]):
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main(line)
        except SystemExit:
            pass
    loaded[" ".join(line)] = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)

# The report reads rows: neither torch nor the run loop, the probes or the models (found here also when a light command
# above had imported them already).
import satbench.report.write, satbench.report.tables
report = sorted(m for m in sys.modules
                if m == "torch" or m.startswith(("satbench.harness.run", "satbench.probes", "satbench.models")))

import models
import satbench.models.train
theirs, ours = models.__file__, satbench.models.__file__
# Training needs tensors, not the classifiers that datasets' shortcut baselines fit.
training = sorted(m for m in sys.modules if m.split(".")[0] == "sklearn")
sys.path = [p for p in sys.path if p not in ("", ".")]
del sys.modules["models"]
try:
    import models
    alone = models.__file__
except ImportError:
    alone = None
print(json.dumps({"loaded": loaded, "report": report, "theirs": theirs, "ours": ours, "alone": alone,
                  "training": training}))
"""


@pytest.fixture(scope="module")
def fresh_interpreter(tmp_path_factory):
    """(what FRESH found, the folder it ran in): one interpreter for the checks that need a fresh one, whose start and
    imports cost more than the checks."""
    project = tmp_path_factory.mktemp("project")
    (project / "models").mkdir()
    (project / "models" / "__init__.py").write_text("")
    out = subprocess.run([sys.executable, "-c", FRESH], cwd=project, capture_output=True, text=True, check=True).stdout
    return json.loads(out), project


@pytest.mark.xdist_group("fresh_interpreter")
def test_one_namespace_and_light_entry_points(fresh_interpreter):
    found, project = fresh_interpreter
    assert found["loaded"] == {line: [] for line in found["loaded"]}, "a light command imported a heavy library"
    assert Path(found["theirs"]).parent.resolve() == (project / "models").resolve()  # the user's package, not ours
    assert Path(found["ours"]).parent.resolve() == (REPO / "models").resolve()
    assert found["alone"] is None, "the installed satbench put a top-level `models` on the path"
    assert found["training"] == [], "importing the training loop brought in scikit-learn"


# --- each choice in one place -------------------------------------------------------------------------------------

def choice_sets():
    """{name: (values, the module that defines them)} of the choices the code offers."""
    from satbench.data import dataset
    from satbench.languages import base
    from satbench.models import attention

    return {"VARIANTS": (set(attention.VARIANTS), "satbench.models.attention"),
            "SURROGATES": (set(attention.SURROGATES), "satbench.models.attention"),
            "LABEL_KINDS": (set(dataset.LABEL_KINDS), "satbench.data.dataset"),
            "NEGATIVES": (set(dataset.NEGATIVES), "satbench.data.dataset"),
            "NEGATIVE_KINDS": (set(base.NEGATIVE_KINDS), "satbench.languages.base")}


def test_each_choice_and_each_reserved_token_is_defined_once():
    """Each name is assigned at module level in one module only, and no other module spells out a list of two or more
    of its values (which would have to change in step with it)."""
    names = {*choice_sets(), "PAD", "BOS", "EOS", "FIRST_SYMBOL"}
    defined, copies = {}, []
    for module, path in modules().items():
        tree = ast.parse(path.read_text())
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AnnAssign) else []
            for target in targets:
                for name in (t.id for t in ast.walk(target) if isinstance(t, ast.Name)):
                    if name in names:
                        defined.setdefault(name, []).append(module)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                continue
            words = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            for name, (values, home) in choice_sets().items():
                if module != home and len(words) == len(node.elts) >= 2 and set(words) <= values:
                    copies.append(f"{path.relative_to(REPO)}:{node.lineno}: {words} copies {name}")
    assert {name: len(where) for name, where in defined.items()} == dict.fromkeys(names, 1), defined
    assert not copies, copies


def test_every_attention_variant_and_model_kind_has_its_theory_entries():
    from satbench.models.attention import VARIANTS
    from satbench.models.recognizer import KINDS
    from satbench.report.common import ATTENTION_VARIANTS, VARIANT_ORDER, load_theory

    assert ATTENTION_VARIANTS == list(VARIANTS)
    assert VARIANT_ORDER == list(VARIANTS) + [kind for kind in KINDS if kind != "transformer"]
    missing = [f"{language}: {variant}" for language, entry in load_theory()["languages"].items()
               for variant in VARIANT_ORDER if variant not in entry]
    assert not missing, missing


SETTINGS = ("matplotlib.", "mpl.", "plt.", "sns.", "seaborn.", "warnings.", "torch.", "np.", "numpy.", "os.environ",
            "logging.", "sklearn.", "pd.")


def test_no_module_changes_process_wide_settings_when_imported():
    """Importing any module of ours leaves the process as it was: no backend, warnings filter, torch or numpy switch
    set at module level (the bench and the report set what they need for their own duration)."""
    found = []
    for path in modules().values():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                text = ast.unparse(node.value.func)
            elif isinstance(node, (ast.Assign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                text = " ".join(ast.unparse(t) for t in targets)
            else:
                continue
            if text.startswith(SETTINGS):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}")
    assert not found, found
