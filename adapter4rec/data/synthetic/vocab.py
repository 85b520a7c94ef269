"""Word lists and headline templates for the synthetic news generator (`synthetic.py`).

Every topic uses real English words so that a pretrained English sentence encoder sees
meaningful, topic-separable semantics. Topic word lists are disjoint from each other and
from the generic pools, so an item's topic is recoverable from its words alone.
"""
from __future__ import annotations

from typing import NamedTuple


class Topic(NamedTuple):
    name: str
    nouns: tuple[str, ...]
    verbs: tuple[str, ...]
    adjectives: tuple[str, ...]


def _topic(name: str, nouns: str, verbs: str, adjectives: str) -> Topic:
    return Topic(name, tuple(nouns.split()), tuple(verbs.split()), tuple(adjectives.split()))


TOPICS: tuple[Topic, ...] = (
    _topic("football",
           "striker goalkeeper midfielder defender derby league penalty goal referee stadium club "
           "manager transfer champions cup match fixture winger header supporters pitch offside "
           "tackle relegation hattrick",
           "scores saves beats draws signs sacks concedes relegated promoted dribbles equalises",
           "injured prolific unbeaten decisive thrilling ruthless away stoppage"),
    _topic("basketball",
           "dunk rebound playoffs guard forward center coach draft rookie court buzzer assist "
           "timeout roster franchise nba conference hoop layup tipoff arena jersey freethrow "
           "point",
           "dunks rebounds shoots drafts trades waives swats clinches outscores edges",
           "clutch towering veteran overtime courtside seeded western eastern allstar"),
    _topic("stock_markets",
           "stocks shares index nasdaq dow investors traders earnings dividend rally selloff "
           "bonds yields futures portfolio hedge ipo valuation volatility exchange broker "
           "equities benchmark profit",
           "surge plunge tumble climb slide soar slump jump dip outperform",
           "bullish bearish volatile quarterly listed bluechip speculative overvalued"),
    _topic("personal_finance",
           "savings pension retirement credit debt loan interest bank account card fees insurance "
           "paycheck spending inflation wallet coupon expenses salary deposit refund annuity "
           "cashback overdraft budget",
           "save borrow spend repay invest earn withdraw refinance splurge owe",
           "frugal monthly cheap costly financial personal hidden taxfree sensible"),
    _topic("politics",
           "election vote ballot candidate senate congress parliament campaign poll voters "
           "president governor senator party debate primary minister lawmakers bill referendum "
           "coalition opposition mandate constituency incumbent",
           "elected campaigns vetoes endorses resigns passes debates nominates impeaches lobbies "
           "pledges",
           "partisan conservative liberal bipartisan electoral legislative presidential swing "
           "progressive federal"),
    _topic("technology",
           "smartphone laptop tablet app software chip processor battery screen startup gadget "
           "headphones smartwatch browser cloud algorithm camera charger wifi bluetooth keyboard "
           "console programmer hackers privacy device",
           "launches unveils upgrades hacks crashes downloads syncs codes patches ships leaks "
           "reboots",
           "wireless digital smart foldable portable encrypted online sleek faster buggy"),
    _topic("space_science",
           "nasa rocket astronauts telescope galaxy planet moon mars asteroid comet orbit "
           "satellite spacecraft launchpad physicists scientists laboratory experiment discovery "
           "species fossil particle quantum star eclipse meteor probe",
           "discover orbits observe detect lands explores measures maps decodes",
           "lunar cosmic interstellar ancient distant orbital microscopic scientific"),
    _topic("health",
           "doctors patients hospital vaccine virus disease cancer treatment surgery nurses clinic "
           "diet obesity diabetes heart brain sleep therapy drug trial symptoms flu pandemic "
           "infection medicine pharmacy allergy",
           "treats diagnose heals prescribes vaccinates recovers infects screens cures prevents "
           "operates",
           "chronic mental medical clinical healthy contagious surgical elderly fatal deadly"),
    _topic("food",
           "recipe chef kitchen restaurant dinner pasta pizza soup salad bread cheese chicken "
           "steak dessert cake chocolate vegetables spices sauce breakfast menu bakery wine "
           "coffee flavour oven noodles",
           "bake cook grill roast taste simmer seasons chops serves stirs fries whisks",
           "delicious spicy crispy vegan creamy homemade savory sweet fresh tasty"),
    _topic("travel",
           "flight airline airport passengers hotel resort beach cruise vacation tourists "
           "destination passport luggage itinerary island backpackers holiday visa train hostel "
           "journey sightseeing cabin",
           "depart boards delays visits arrives roam unpacks travels books",
           "scenic exotic tropical coastal lowcost luxury overbooked secluded charming "
           "international"),
    _topic("weather",
           "storm hurricane rain snow heatwave forecast temperatures flooding tornado drought wind "
           "thunderstorms blizzard fog frost humidity meteorologists clouds sunshine hail monsoon "
           "wildfire cyclone gusts rainfall",
           "batters pours freezes floods warms cools blankets drenches evacuate forecasts",
           "stormy icy humid sunny freezing windy rainy severe arctic scorching chilly"),
    _topic("movies_tv",
           "film movie director actor actress series episode sequel trailer premiere oscar "
           "hollywood studio boxoffice script cast critics streaming netflix documentary "
           "screenplay blockbuster sitcom showrunner remake cinema finale",
           "stars directs films streams casts premieres airs renews cancels",
           "animated cinematic acclaimed upcoming dramatic horror romantic binge"),
    _topic("music",
           "album song singer band concert guitar drummer rapper lyrics chart festival playlist "
           "grammy vinyl single track orchestra symphony pianist producer gig stage melody "
           "chorus duet",
           "sings performs releases records tours remixes headlines composes rocks",
           "acoustic catchy soulful live debut classical platinum indie lyrical"),
    _topic("cars",
           "car sedan suv truck engine hybrid dealership recall horsepower mileage driver "
           "motorists highway fuel gasoline tesla toyota brakes tires transmission garage pickup "
           "convertible automaker coupe dashboard airbag",
           "drives accelerates recalls steers tows speeds overtakes refuels parks revs",
           "electric efficient turbocharged sporty autonomous compact rugged used offroad"),
    _topic("real_estate",
           "house home apartment mortgage rent landlord tenants realtor listing condo property "
           "housing buyers sellers neighborhood renovation foreclosure suburbs bedroom backyard "
           "homeowners lease zoning developer",
           "buys sells renovate lists evicts appraise builds relocate downsize flips",
           "spacious cozy vacant residential suburban affordable waterfront historic modern"),
    _topic("education",
           "school students teachers university college campus exam classroom curriculum degree "
           "tuition scholarship graduates professor lecture homework kindergarten principal "
           "semester diploma textbook admissions literacy pupils dean",
           "teaches learns graduate enrolls studies tutors grades expels admits lectures",
           "academic educational gifted public private elementary collegiate undergraduate"),
)

# Generic headline words shared by all topics; they carry no topic signal.
FILLERS: tuple[str, ...] = tuple(
    "new report week says latest big first today year more top local major early again still "
    "now record plans could may this why how what ahead officials experts study next".split())

# Short function words that glue topic words together.
CONNECTORS: tuple[str, ...] = tuple(
    "as after amid over despite with before while for in at on against".split())

# Slots: N noun, V verb, A adjective (topic words); F filler, C connector (generic words).
# Each template has 3-6 topic slots and 1-3 generic slots (5-9 words).
TITLE_TEMPLATES: tuple[str, ...] = (
    "A N V N C N",
    "N V A N C A N",
    "F N V N C N",
    "F A N V N C F N",
    "N V N C F N",
    "F F N V A N",
    "A N C N V N F",
    "N N V A N C N F",
    "F A N V N C A N F",
    "F N C N V A N",
)

# Clauses for abstracts; joined by connectors until the abstract has at least 12 words.
ABSTRACT_CLAUSES: tuple[str, ...] = (
    "A N V N",
    "N V A N",
    "F N V N",
    "N C A N",
    "A N V A N",
)
