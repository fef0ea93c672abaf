"""The categories of the brief and the subcategories the classifier tells apart.

The categories are the tickets table's (service, facility, environment, safety, other); the
subcategories are the common matters under each, named as routing rules name them. The
descriptions are the labelling guide the corpus was written to (cloud/classify/corpus/README.md).
"""

#: category -> {subcategory: what belongs there}
TAXONOMY: dict[str, dict[str, str]] = {
    "service": {
        "staff_attitude": "rude, dismissive or unhelpful staff: guards, desk, cleaners, technicians as people",
        "efficiency": "slow or no response, nobody came, waited days, passed between people",
        "service_quality": "work done badly or carelessly, repeat visits, promises not kept",
        "billing": "management fees, parking fees, utility charges, receipts, wrong amounts",
    },
    "facility": {
        "elevator": "lifts: stuck, broken down, doors, noises, buttons, trapped people",
        "plumbing": "water supply, leaks, pipes, drains, blocked toilets, water pressure, water heaters",
        "electrical": "power cuts, lights in corridors and stairs, sockets, breakers, wiring",
        "door_access": "entrance doors, intercoms, card readers, face gates, locks, barrier gates",
        "public_facility": "common areas' fixtures: playground, benches, mailboxes, railings, roof, walls, paving",
    },
    "environment": {
        "sanitation": "rubbish, bins, cleaning of corridors and stairs, smells, dirty common areas",
        "greenery": "trees, lawns, hedges, pruning, dead plants, fallen branches",
        "noise": "noise from renovation, neighbours, shops, machines, music, at night",
        "pests": "rats, cockroaches, mosquitoes, termites, pest control",
    },
    "safety": {
        "security": "strangers, theft, break-ins, guards absent, doors left open, suspicious people",
        "fire": "fire exits blocked, extinguishers, smoke, alarms, gas smell, hazards that may burn",
    },
    "other": {
        "parking": "parking spaces taken, cars blocking, bicycles, charging points",
        "pets": "dogs off the lead, pet waste, barking, animals in common areas",
        "suggestion": "ideas, requests for new services, questions and praise",
    },
}

CATEGORIES: tuple[str, ...] = tuple(TAXONOMY)
SUBCATEGORIES: dict[str, str] = {sub: cat for cat, subs in TAXONOMY.items() for sub in subs}


def category_of(subcategory: str) -> str:
    """The category a subcategory belongs to (KeyError for one the taxonomy does not know)."""
    return SUBCATEGORIES[subcategory]
