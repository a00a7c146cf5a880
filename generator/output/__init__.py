"""OUT/ (by default build/ next to the spec): what `gen generate` writes there, where, and the manifest that records
it for `gen build`, `gen simulate`, `gen flash` and `gen monitor`. Everything in OUT can be made again."""
