"""Pure statistics behind noise-aware verdicts (stdlib only, no I/O).

One module a concern: `robust` (median, MAD, relative spread), `rank_test` (the Mann-Whitney
U test and its exact distribution), `hodges_lehmann` (the change as a ratio with its
interval), `detectable_effect` (the smallest change the noise lets the test see, and the
rounds that would do), `multiple_testing` (Benjamini-Hochberg) and `assessment` (one
metric's change, p-value and noise). Deciding what an assessment means for the gate is the
verdict policy's job (`compare.py`). scipy's import cost does not belong in every pytest
start, so everything is computed here; the tests check it against scipy on many random inputs.

Why Hodges-Lehmann on log values, not a bootstrap. Timing noise here is two-levelled and
skewed, and rounds are few (3-30). The Hodges-Lehmann estimate of the shift between
`log(current)` and `log(baseline)` (the median of all pairwise log-ratios), exponentiated, is a
ratio; its interval comes from the same Mann-Whitney distribution as the test, exact for
small samples, so the interval and the test can never disagree (the interval excludes 1 exactly
when the one-sided exact test at half the level rejects). It is distribution-free, deterministic
without a seed, and its coverage is guaranteed for any n. A percentile bootstrap needs a seed,
thousands of resamples per metric, and undercovers badly below about 10 rounds, where most of
our samples are.
"""
