"""Check the docs: every relative Markdown link resolves and every library has its page."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBS = ["obs", "meshnet", "spore", "bftconsensus", "dram", "blockstore"]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def main() -> int:
    problems: list[str] = []
    pages = [ROOT / "README.md", *ROOT.glob("docs/**/*.md"), *ROOT.glob("libs/*/README.md")]
    for page in pages:
        for target in LINK.findall(page.read_text()):
            if "://" in target:
                continue
            if not (page.parent / target).exists():
                problems.append(f"{page.relative_to(ROOT)}: broken link {target}")
    problems += [f"docs/{lib}.md is missing" for lib in LIBS if not (ROOT / "docs" / f"{lib}.md").exists()]
    print("\n".join(problems) or "docs OK")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
