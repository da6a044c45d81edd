"""The documentation stays true: the guardrails reference names every setting, reason code and trigger,
every `botkit` command the docs show exists, and every relative link resolves."""

import re

import pytest

from botkit.cli import cli
from botkit.config import KillSwitchConfig, LimitsConfig, PaperConfig, RiskConfig, RuntimeConfig, VenueConfig
from botkit.domain import Reason
from tests.support import ROOT

GUARDRAILS = (ROOT / "docs" / "guardrails.md").read_text()
PAGES = [ROOT / "README.md", ROOT / "docker" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize(
    "section", [RiskConfig, LimitsConfig, KillSwitchConfig, RuntimeConfig, VenueConfig, PaperConfig]
)
def test_the_guardrails_reference_names_every_setting(section):
    missing = [name for name in section.model_fields if f"`{name}`" not in GUARDRAILS]
    assert not missing, f"{section.__name__}: {missing}"


def test_the_guardrails_reference_names_every_reason_code_and_trigger():
    assert [r.value for r in Reason if f"`{r.value}`" not in GUARDRAILS] == []
    source = (ROOT / "botkit" / "guards" / "killswitch.py").read_text()
    triggers = set(re.findall(r'_trip\("([a-z_]+)"', source))
    assert len(triggers) >= 10
    assert sorted(t for t in triggers if f"`{t}`" not in GUARDRAILS) == []


def test_every_botkit_command_in_the_docs_exists():
    shown = 0
    for page in PAGES:
        text = page.read_text()
        blocks = "\n".join(re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M))
        # inline code (`botkit x ...`) and command lines in shell blocks (also after `&&` or `exec bot`)
        names = re.findall(r"`botkit ([a-z][a-z-]*)", text)
        names += re.findall(r"(?:^|&& |exec bot )botkit ([a-z][a-z-]*)", blocks, re.M)
        for name in names:
            shown += 1
            assert name in cli.commands, f"{page.name}: botkit {name}"
    assert shown > 20


def test_relative_links_resolve():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#:]+)\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to {target}"
