"""The cold first command's report: the timeline of its output, the waits between lines,
and the compile's seconds by target read from the model image's build log."""

from __future__ import annotations

from sandboxctl.bench import coldstart

BUILD_LOG = """[4/10] STEP 11/12: RUN build-llama "${GPU_BACKEND}"
[269/269] Linking CXX executable bin/llama-server
compile seconds by target (summed over its files; 2 jobs at a time):
    300.0  (wall clock, first file to last)
    250.0  llama
     60.0  ggml-cpu-skylakex
     50.0  ggml-cpu-haswell
      2.0  ggml-cpu-haswell-feats
     30.0  llama-server
llama-server --version
version: 11312 (0c1e57098)
"""


def test_a_timeline_line_holds_the_seconds_and_the_output_line() -> None:
    row = coldstart.timeline_line(12.345, "built x in 3 s\n")
    assert row == "12.3\tbuilt x in 3 s\n"
    assert coldstart.parse_timeline(row) == [(12.3, "built x in 3 s")]


def test_a_timeline_skips_rows_that_are_not_one() -> None:
    text = "1.0\tfirst\nnot a row\nx\tbad stamp\n2.5\tsecond\twith a tab\n"
    assert coldstart.parse_timeline(text) == [(1.0, "first"), (2.5, "second\twith a tab")]


def test_each_line_waits_until_the_next_and_the_last_until_the_end() -> None:
    waits = coldstart.waits([(0.0, "a"), (10.0, "b"), (12.0, "c")], total_s=20.0)
    assert [(w.line, w.seconds) for w in waits] == [("a", 10.0), ("b", 2.0), ("c", 8.0)]


def test_the_compile_table_is_read_largest_first_with_its_wall_clock() -> None:
    wall, targets = coldstart.compile_targets(BUILD_LOG)
    assert wall == 300.0
    assert targets[0] == (250.0, "llama")
    assert [name for _s, name in targets] == [
        "llama", "ggml-cpu-skylakex", "ggml-cpu-haswell", "llama-server", "ggml-cpu-haswell-feats",
    ]  # fmt: skip


def test_a_cached_build_has_no_compile_table() -> None:
    assert coldstart.compile_targets("STEP 11/12: RUN build-llama\n--> Using cache\n") == (None, [])


def test_the_report_names_the_total_the_longest_waits_and_each_variants_share() -> None:
    timeline = [(0.0, "bootstrap: installing"), (40.0, "building model | cpu"), (440.0, "done")]
    report = coldstart.render(
        command="./bootstrap.sh invoke demo", total_s=450.0, timeline=timeline,
        build_log=BUILD_LOG, machine="2 cores", date="2026-12-07", longest=2,
    )  # fmt: skip
    assert "took **450 s**" in report
    assert "| 40 s | 400 s | 89% | `building model \\| cpu` |" in report
    assert "| 0 s | 40 s | 9% | `bootstrap: installing` |" in report
    assert "`done`" not in report  # only the two longest waits
    assert "| `llama` | 250 | 64% |" in report
    assert "`skylakex` 60 s, `haswell` 52 s (29% of the compile)" in report


def test_a_history_row_holds_the_total_the_compiles_wall_clock_and_the_variants() -> None:
    row = coldstart.history_row(
        date="2026-12-07", commit="abc1234", total_s=412.4, build_log=BUILD_LOG
    )
    assert row == "| 2026-12-07 | `abc1234` | 412 s | 300 s | haswell,skylakex |\n"


def test_a_history_row_of_a_cached_build_says_so() -> None:
    row = coldstart.history_row(date="d", commit="c", total_s=60, build_log="")
    assert row == "| d | `c` | 60 s | cached | ? |\n"


def test_an_output_line_is_one_inert_cell_whatever_it_holds() -> None:
    """The run's lines hold the model's words: backticks cannot end the code span, a
    pipe cannot start a cell, a terminal escape or a newline cannot reach the page."""
    cell = coldstart.code_cell("a ``b`` | <script>x</script>\x1b[31m\n")
    assert cell == "```a ``b`` \\| <script>x</script>?[31m?```"
    assert coldstart.code_cell("`x`") == "`` `x` ``"
    assert coldstart.code_cell("plain") == "`plain`"
