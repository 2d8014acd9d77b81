"""
What a reaction may be: one emoji, as a keyboard's emoji picker types it. Checked by the shape of
its code points (Python's unicodedata has no Emoji property), without a dependency:

- a flag: two regional indicators (🇫🇷), or a black flag with tag characters (🏴 + tags, England);
- a keycap: 0-9, # or * with an optional U+FE0F, then U+20E3 (1️⃣);
- otherwise one or more pictographs joined by ZERO WIDTH JOINER (👩‍💻), each a symbol
  (category So) from the emoji blocks, optionally followed by U+FE0F and a skin tone (👍🏽).

Bounded to MAX_EMOJI_BYTES of UTF-8 (the longest common sequences, families, take 25).
"""
import unicodedata

MAX_EMOJI_BYTES = 32

ZWJ = "\u200d"
VS16 = "\ufe0f"
KEYCAP = "\u20e3"
SKIN_TONES = range(0x1F3FB, 0x1F400)
REGIONAL_INDICATORS = range(0x1F1E6, 0x1F200)
TAGS = range(0xE0020, 0xE007F)
CANCEL_TAG = "\U000e007f"
BLACK_FLAG = "\U0001f3f4"
# Where emoji pictographs live (Unicode's emoji data lists them in these blocks); symbols
# outside them (box drawing, currency, math) are not emoji.
_EMOJI_BLOCKS = (
    range(0x2190, 0x2200),  # arrows (↔️)
    range(0x2300, 0x2400),  # miscellaneous technical (⌚)
    range(0x24C2, 0x24C3),  # Ⓜ️
    range(0x25A0, 0x2800),  # geometric shapes, miscellaneous symbols, dingbats (☀️ ❤️ ✅)
    range(0x2900, 0x2980),  # supplemental arrows (⤴️)
    range(0x2B00, 0x2C00),  # miscellaneous symbols and arrows (⭐)
    range(0x3030, 0x3031),
    range(0x303D, 0x303E),
    range(0x3297, 0x329A),  # ㊗️ ㊙️
    range(0x1F000, 0x1FB00),  # the emoji planes' blocks (😀 👍 🦄 🫠)
)
# Emoji outside category So.
_OTHER_EMOJI = {"\u203c", "\u2049", "\u2139", "\u00a9", "\u00ae", "\u2122"}


def _pictograph(char: str) -> bool:
    if char in _OTHER_EMOJI:
        return True
    code = ord(char)
    if code in REGIONAL_INDICATORS:  # only in pairs (flags)
        return False
    return unicodedata.category(char) == "So" and any(code in block for block in _EMOJI_BLOCKS)


def _component(text: str) -> bool:
    """One pictograph, its optional presentation selector and skin tone."""
    if not text or not _pictograph(text[0]):
        return False
    rest = text[1:]
    if rest.startswith(VS16):
        rest = rest[1:]
    if rest and ord(rest[0]) in SKIN_TONES:
        rest = rest[1:]
    return rest == ""


def is_single_emoji(text: str) -> bool:
    """Whether `text` is exactly one emoji (see the module's docstring), at most MAX_EMOJI_BYTES long."""
    if not isinstance(text, str) or not text or len(text.encode("utf-8")) > MAX_EMOJI_BYTES:
        return False
    if len(text) == 2 and all(ord(c) in REGIONAL_INDICATORS for c in text):
        return True
    if text[0] in "0123456789#*" and text[1:] in (KEYCAP, VS16 + KEYCAP):
        return True
    if text.startswith(BLACK_FLAG) and text.endswith(CANCEL_TAG) and len(text) > 2:
        return all(ord(c) in TAGS for c in text[1:-1])
    return all(_component(part) for part in text.split(ZWJ))


def emoji_code(text: str) -> str:
    """The emoji as its code points in hex, joined by "-": MessageReaction.emoji_code."""
    return "-".join(f"{ord(c):x}" for c in text)


def emoji_from_code(code: str) -> str:
    return "".join(chr(int(part, 16)) for part in code.split("-"))
