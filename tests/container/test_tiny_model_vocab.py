"""The tiny model's chat template against the real tokenizer of the placed llama.cpp source.

Needs `invoke model.source` (the container session runs it first), so it lives here rather
than among the unit tests.
"""

from __future__ import annotations

import gguf
import pytest

from sandboxctl.llama import source as llama_source

pytestmark = [pytest.mark.container]


def test_template_tokens_exist_in_real_llama_spm_vocab() -> None:
    """Every token the tiny model's template uses is in the llama-spm vocabulary, and
    ChatML's are not (so the server must not fall back to ChatML)."""
    try:
        path = llama_source.vocab_path()
    except llama_source.SourceError as error:
        pytest.fail(f"{error}")
    tokens = set(gguf.GGUFReader(path).fields["tokenizer.ggml.tokens"].contents())
    assert {"[", "]", "INST", "/", "<<", ">>"} <= tokens
    assert "<|im_start|>" not in tokens
