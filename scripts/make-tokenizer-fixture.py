#!/usr/bin/env python3
"""Makes model/tests/fixtures/tokenizer.json: token ids of test strings from an INDEPENDENT
tokenizer implementation (llama.cpp, through PyPI `llama-cpp-python`, built from source), for
the SmolLM2 GGUF that scripts/get-model.sh fetches. The Rust tests compare ringattn-model's
tokenizer with these ids; the fixture is committed, so CI needs neither this script nor the tool.

Usage: pip install llama-cpp-python==0.3.36 && python3 scripts/make-tokenizer-fixture.py [GGUF]
"""
import json
import os
import sys

from llama_cpp import Llama

STRINGS = [
    "Hello, world!",
    "What is the capital of France?",
    "The quick brown fox jumps over the lazy dog.",
    " leading space",
    "  two leading spaces",
    "trailing spaces   ",
    "tabs\tand\ttabs\t\t",
    "line one\nline two\n\nline four",
    "windows\r\nline\r\nendings\r\n",
    "numbers 1234567890 and 3.14159 and 1,000,000",
    "year 2024, version v0.11.1, 42nd",
    "Ünïcödé: café, naïve, Zürich, Ångström",
    "日本語のテキスト、中文文本，한국어 텍스트",
    "emoji 😀🎉👍🏽 and flags 🇫🇷",
    "Ελληνικά και русский текст",
    "math: ∀x ∈ ℝ, x² ≥ 0 → √x",
    "fn main() {\n    println!(\"Hello, {}!\", name);\n}\n",
    "def f(x):\n\treturn [i**2 for i in range(x) if i % 2 == 0]\n",
    "#include <stdio.h>\nint main(void) { return 0; }",
    "SELECT * FROM users WHERE id = 42 AND name LIKE '%bob%';",
    "<html><body class=\"x\">&amp; &lt;tag&gt;</body></html>",
    "URL: https://example.com/path?query=1&x=y#frag",
    "email: someone@example.org, @mention #hashtag",
    "CamelCaseIdentifiers and snake_case_names and SCREAMING_CASE",
    "don't can't won't I'm you're it's we'll they've",
    "multiple     spaces      inside",
    "\n\n\n",
    " ",
    "a",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>text after end",
    "mixed<|im_start|>tags<|im_end|>inline",
    "punctuation!!! ??? ... --- *** ((( )))",
    "a" * 300,
    ("The passkey is 68231. Remember it. " * 40) + "What is the passkey?",
]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.join(
        os.environ.get("RINGATTN_MODEL_DIR", os.path.expanduser("~/.cache/ringattn/models")),
        "SmolLM2-135M-Instruct.Q4_1.gguf",
    )
    path = sys.argv[1] if len(sys.argv) > 1 else default
    llm = Llama(model_path=path, vocab_only=True, verbose=False)
    cases = []
    for s in STRINGS:
        ids = llm.tokenize(s.encode("utf-8"), add_bos=False, special=True)
        cases.append({"text": s, "ids": ids})
    import llama_cpp

    out = {
        "tool": f"llama-cpp-python {llama_cpp.__version__} (llama.cpp tokenizer), add_bos=False, special=True",
        "model": os.path.basename(path),
        "cases": cases,
    }
    dest = os.path.join(here, "..", "model", "tests", "fixtures", "tokenizer.json")
    with open(dest, "w", encoding="utf-8") as f:
        # One case per line: reviewable diffs.
        f.write("{\n")
        f.write(f' "tool": {json.dumps(out["tool"])},\n "model": {json.dumps(out["model"])},\n')
        f.write(' "cases": [\n')
        lines = [" " + json.dumps(c, ensure_ascii=False) for c in cases]
        f.write(",\n".join(lines))
        f.write("\n ]\n}\n")
    print(f"wrote {len(cases)} cases to {os.path.normpath(dest)}")


if __name__ == "__main__":
    main()
