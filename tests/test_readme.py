"""The README's env snippet must keep working as written."""

import re
from pathlib import Path


def test_readme_snippet_pushes_the_t_to_success():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    assert namespace["info"]["is_success"]
    assert namespace["frame"].shape == (384, 384, 3)
