"""What ``ragops bundle validate`` reports: one problem, with the file and key it is about."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Issue:
    file: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.message}"
