"""Built-in slot vocabularies of the template generator: word lists and units (with their sizes,
which the unit-conversion checker uses too)."""

from __future__ import annotations

WORD_LISTS: dict[str, tuple[str, ...]] = {
    "names": ("Aisha", "Alejandro", "Amara", "Anders", "Ananya", "Ben", "Carmen", "Chen", "Chloe", "Dmitri",
              "Elena", "Emeka", "Farah", "Fatima", "Finn", "Gabriel", "Hana", "Hiroshi", "Ines", "Ivan",
              "Jamal", "Jin", "Kai", "Keiko", "Lars", "Leila", "Lucas", "Maya", "Mateo", "Mei", "Nadia",
              "Nikhil", "Noah", "Olga", "Omar", "Priya", "Rafael", "Rosa", "Sami", "Sara", "Sofia",
              "Tariq", "Tomas", "Uma", "Victor", "Wei", "Yara", "Yusuf", "Zara", "Zoe"),
    "items": ("apples", "pencils", "books", "oranges", "marbles", "stickers", "notebooks", "cookies",
              "tickets", "candles", "bottles", "stamps", "shells", "cards", "coins", "buttons",
              "bananas", "cupcakes", "balloons", "crayons", "plates", "envelopes", "batteries", "lemons",
              "tomatoes", "socks", "keys", "rulers", "mugs", "seeds"),
    "cities": ("Accra", "Amsterdam", "Athens", "Bogota", "Cairo", "Chicago", "Dakar", "Delhi", "Dublin",
               "Hanoi", "Helsinki", "Jakarta", "Kyoto", "Lagos", "Lima", "Lisbon", "Madrid", "Manila",
               "Melbourne", "Montreal", "Nairobi", "Oslo", "Prague", "Quito", "Seoul", "Tunis", "Vienna",
               "Warsaw", "Zagreb", "Zurich"),
}

#: unit -> size in the category's base unit (metre, gram, litre, second, byte)
UNITS: dict[str, dict[str, float]] = {
    "length": {"millimetre": 0.001, "centimetre": 0.01, "metre": 1.0, "kilometre": 1000.0, "inch": 0.0254,
               "foot": 0.3048, "yard": 0.9144, "mile": 1609.344},
    "mass": {"milligram": 0.001, "gram": 1.0, "kilogram": 1000.0, "tonne": 1e6, "ounce": 28.349523125,
             "pound": 453.59237},
    "volume": {"millilitre": 0.001, "litre": 1.0, "cubic metre": 1000.0, "US gallon": 3.785411784,
               "US fluid ounce": 0.0295735295625},
    "time": {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0, "week": 604800.0},
    "data": {"byte": 1.0, "kilobyte": 1e3, "megabyte": 1e6, "gigabyte": 1e9, "kibibyte": 1024.0,
             "mebibyte": 1048576.0},
}
_IRREGULAR_PLURALS = {"inch": "inches", "foot": "feet"}


def plural(unit: str) -> str:
    return _IRREGULAR_PLURALS.get(unit, unit + "s")


def unit_category(unit: str) -> str | None:
    return next((cat for cat, units in UNITS.items() if unit in units), None)
