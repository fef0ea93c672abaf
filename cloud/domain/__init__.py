"""Domain logic: the registry, alarms and tickets. Each function takes a connection and a clock."""
