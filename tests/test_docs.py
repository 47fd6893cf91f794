"""README carries the generated feature tables and the exact CI test command."""

from __future__ import annotations

import re
from pathlib import Path

from vitalflow.spec import load_spec
from vitalflow.spec.tables import markdown_tables

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_feature_tables_are_generated_from_the_spec():
    block = re.search(r"<!-- spec-tables:start -->\n(.*)\n<!-- spec-tables:end -->", README, re.S)
    assert block, "README lacks the spec-tables markers"
    assert block.group(1).strip() == markdown_tables(load_spec()).strip(), (
        "README's feature tables differ from the spec: paste the output of `vitalflow spec`"
    )


def test_readme_opens_with_two_commands_and_ci_runs_the_second():
    first_block = re.search(r"```bash\n(.*?)```", README, re.S).group(1).strip().splitlines()
    assert len(first_block) == 2
    assert "vitalflow demo" in first_block[0] and "pytest" in first_block[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert first_block[1] in ci.splitlines()


def test_readme_reads_the_output_with_the_schemas_tensorflow_snippet():
    """README's "read it with TensorFlow" code is what `tensorflow_snippet` renders from the example
    schema of the default spec and config (paste its output when the schema changes)."""
    from vitalflow.dataset.schema import example_schema, tensorflow_snippet
    from vitalflow.spec import load_config

    config, spec = load_config()
    snippet = tensorflow_snippet(example_schema(spec, config), config.output.compression)
    assert f"```python\n{snippet}```" in README, (
        "README's TensorFlow snippet differs from the schema's: paste the output of "
        "vitalflow.dataset.schema.tensorflow_snippet"
    )
