"""Message catalogue: console/i18n/<lang>.json, zh-CN first, English second.

Both files hold the same keys (a test checks it). A missing key shows the key itself, never an
empty label.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

__all__ = ["DEFAULT_LANG", "LANGS", "Translator", "catalogue"]

LANGS = ("zh-CN", "en")
DEFAULT_LANG = "zh-CN"


@lru_cache(maxsize=4)
def catalogue(lang: str) -> dict[str, str]:
    if lang not in LANGS:
        raise ValueError(f"lang: expected one of {LANGS}, got {lang!r}")
    text = resources.files("console").joinpath("i18n", f"{lang}.json").read_text(encoding="utf-8")
    data: dict[str, str] = json.loads(text)
    return data


class Translator:
    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in LANGS else DEFAULT_LANG
        self._cat = catalogue(self.lang)

    def __call__(self, key: str, **params: object) -> str:
        text = self._cat.get(key, key)
        return text.format(**params) if params else text

    def pick(self, zh: str | None, en: str | None) -> str:
        """The text in the current language, falling back to the other one."""
        if self.lang == "en":
            return en or zh or ""
        return zh or en or ""
