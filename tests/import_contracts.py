"""An import-linter contract type for what the built-in ``forbidden`` contract cannot name: a
part of an external package (``django.db``; import-linter only knows external packages whole).

Configured in pyproject.toml (``contract_types``); checked by ``lint-imports`` in CI and by
tests/test_architecture.py.
"""

from __future__ import annotations

import re

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output


class ForbiddenSubmoduleContract(Contract):
    """No module of ``source_modules`` (or below) imports ``forbidden_modules`` directly."""

    source_modules = fields.ListField(subfield=fields.ModuleField())
    forbidden_modules = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        patterns = {name: re.compile(rf"^\s*(from|import)\s+{re.escape(name)}(\.|\s|$)") for name in self.forbidden_modules}
        violations = []
        for source in self.source_modules:
            for module in sorted({source.name} | graph.find_descendants(source.name)):
                for imported in sorted(graph.find_modules_directly_imported_by(module)):
                    for detail in graph.get_import_details(importer=module, imported=imported):
                        violations += [f"{module}:{detail['line_number']} {detail['line_contents'].strip()}"
                                       for name, pattern in patterns.items() if pattern.match(detail["line_contents"])]
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for violation in check.metadata["violations"]:
            output.print_error(f"- {violation}", bold=False)
        output.new_line()
