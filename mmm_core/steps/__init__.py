"""Pipeline steps as plain functions over files, plus their CLI."""
