"""The gridops commands, one module per command group; etl.cli assembles them."""
