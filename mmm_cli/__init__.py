"""The ``mmm`` command: the application layer above the `mmm_core` library.

`mmm_cli.main` parses the top level and hands over to one module of `mmm_cli.commands`
(one per subcommand). The commands may use `mmm_core`, `pipelines` and `kfp`; `mmm_core`
never imports this package (import-linter contracts in pyproject.toml).
"""
