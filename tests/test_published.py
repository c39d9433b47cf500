"""The tolerance the published-table regeneration tests compare numbers with."""

from __future__ import annotations

from tests._published import table_differences


def test_last_digits_of_a_full_precision_float_may_differ_across_cpus():
    # The two spellings of sign_flip.csv's numbers that an AVX-512 and an AVX2 machine gave.
    assert table_differences("a,1.0513847515,-0.59174689147728\n",
                             "a,1.051384751465,-0.5917468914772803\n") == []


def test_a_rounded_number_may_move_one_unit_in_its_last_printed_digit_and_no_more():
    assert table_differences("| +2.74 |", "| +2.73 |") == []
    assert table_differences("| +2.75 |", "| +2.73 |") == ["+2.75 where +2.73 was published"]


def test_integers_and_text_must_be_equal():
    assert table_differences("3 seeds", "2 seeds") == ["3 where 2 was published"]
    assert table_differences("net 1.0", "NCA 1.0") == ["the text differs (first at line 0)"]
    assert table_differences("1.0, 2.0", "1.0") == ["the text differs (first at line 0)"]
