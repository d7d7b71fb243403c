"""Street addresses: a house number next to a street name that carries a street-type word.

The street-type vocabularies are the public ones (USPS Publication 28 suffixes; the common Spanish, French,
Italian, German and Dutch street words). A capitalised phrase is only an address with both a number and such a
word, so "Avenue" in prose or "2 Main Ideas" stay. spaCy sees "Washington" as a place, not the street line.
"""

from __future__ import annotations

import re

from genzoo.store.pii.recognizers import _CandidateRecognizer

# USPS Publication 28, C1 (common street suffixes and their abbreviations)
_US_SUFFIXES = """
alley aly allee annex anx arcade arc avenue ave av bayou byu beach bch bend bnd bluff blf bluffs blfs bottom btm
boulevard blvd branch br bridge brg brook brk brooks brks burg bg burgs bgs bypass byp camp cp canyon cyn cape cpe
causeway cswy center ctr centers ctrs circle cir circles cirs cliff clf cliffs clfs club clb common cmn commons cmns
corner cor corners cors course crse court ct courts cts cove cv coves cvs creek crk crescent cres crest crst
crossing xing crossroad xrd crossroads xrds curve curv dale dl dam dm divide dv drive dr drives drs estate est
estates ests expressway expy extension ext extensions exts fall falls fls ferry fry field fld fields flds flat flt
flats flts ford frd fords frds forest frst forge frg forges frgs fork frk forks frks fort ft freeway fwy garden gdn
gardens gdns gateway gtwy glen gln glens glns green grn greens grns grove grv groves grvs harbor hbr harbors hbrs
haven hvn heights hts highway hwy hill hl hills hls hollow holw inlet inlt island is islands iss isle junction jct
junctions jcts key ky keys kys knoll knl knolls knls lake lk lakes lks land landing lndg lane ln light lgt lights
lgts loaf lf lock lck locks lcks lodge ldg loop mall manor mnr manors mnrs meadow mdw meadows mdws mews mill ml mills
mls mission msn motorway mtwy mount mt mountain mtn mountains mtns neck nck orchard orch oval ovl overpass opas park
prk parks parkway pkwy parkways pass passage psge path pike pkes pine pne pines pnes place pl plain pln plains plns
plaza plz point pt points pts port prt ports prts prairie pr radial radl ramp ranch rnch rapid rpd rapids rpds rest
rst ridge rdg ridges rdgs river riv road rd roads rds route rte row rue run shoal shl shoals shls shore shr shores
shrs skyway skwy spring spg springs spgs spur spurs square sq squares sqs station sta stravenue stra stream strm
street st streets sts summit smt terrace ter throughway trwy trace trce track trak trafficway trfy trail trl trailer
trlr tunnel tunl turnpike tpke underpass upas union un unions uns valley vly valleys vlys viaduct via view vw views
vws village vlg villages vlgs ville vl vista vis walk walks wall way ways well wl wells wls close gate gate
""".split()
_DIRECTIONS = r"(?:N|S|E|W|NE|NW|SE|SW|North|South|East|West|Northeast|Northwest|Southeast|Southwest)\.?"
# Street words that come before the name (Spanish, French, Italian, Portuguese ...)
_LEADING = """
calle c/ avenida avda av. paseo plaza camino carretera ronda pasaje rambla glorieta cañada callejón cuesta
urbanización alameda travesía acceso bulevar carrera senda polígono vial ramal pasadizo vía via viale piazza piazzale corso largo vicolo contrada borgo strada rotonda stretto
incrocio canale rue avenue boulevard bd chemin place impasse allée quai route cours passage square rua praça
""".split()
# Street words glued to the end of the name (German, Dutch ...)
_GLUED = """
straße strasse str. weg gasse platz allee ring damm ufer chaussee pfad steig markt gang hof
straat laan plein gracht singel kade dijk dreef steeg pad boulevard park
""".split()

_WORD = r"[A-ZÀ-Þ][\w'’.-]*"  # a capitalised word (accents, hyphens, apostrophes, abbreviations)
_LOWER_OK = r"(?:de|del|de la|des|du|di|da|della|dei|van|von|der|den|la|le|les|el|los|las|y|e|et|the|of|d'|l')"
_NAME = rf"(?:{_WORD}|{_LOWER_OK})(?:[ ]+(?:{_WORD}|{_LOWER_OK})){{0,4}}"
_UNIT = (r"(?:,?\s*(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|Flat|Studio|Room|Rm\.?|Floor|Fl\.?|#|Appartamento|Piano|"
         r"Interno|Scala|Puerta|Piso|Escalera|Bajo|Étage|Bâtiment|Wohnung)\s*[\w-]+)")
_NUM = r"\d{1,6}[A-Za-z]?(?:[-/]\d{1,4}[A-Za-z]?)?"
_US_SUFFIX = "|".join(sorted((re.escape(s) for s in set(_US_SUFFIXES)), key=len, reverse=True))
_LEAD = "|".join(sorted((re.escape(s) for s in _LEADING), key=len, reverse=True))
_GLUE = "|".join(sorted((re.escape(s) for s in _GLUED), key=len, reverse=True))
_CITY = r"(?:,\s*[A-ZÀ-Þ][\w'’-]+(?:[ ][A-ZÀ-Þ][\w'’-]+){0,2})?(?:,?\s*[A-Z]{2})?(?:\s+\d{5}(?:-\d{4})?)?"

_ADDRESS = re.compile(
    # 1600 Pennsylvania Avenue NW[, Apt 2][, Washington[, DC 20500]]   (US, UK, Australian ...)
    rf"(?<![\w.,-])(?:{_NUM})[ ]+{_WORD}(?:[ ]+(?:{_WORD}|{_LOWER_OK})){{0,4}}[ ]+(?=[A-Z])(?i:{_US_SUFFIX})\.?(?![\w-])(?:[ ]+{_DIRECTIONS}(?!\w))?{_UNIT}?{_CITY}"
    # Flat 41, Leigh Highway / Studio 9, Bernard Roads   (UK: the unit number stands for the house number)
    rf"|(?<![\w.-])(?:Flat|Studio|Apartment|Unit|Suite)[ ]+\d{{1,5}}[A-Za-z]?,[ ]+{_WORD}(?:[ ]+{_WORD}){{0,3}}[ ]+(?=[A-Z])(?i:{_US_SUFFIX})\.?(?![\w-])"
    # 12, rue de la Paix / 7 avenue Lesage / Calle de Alcalá 48 / Via Roma, 1 / Piazza Pellico, 59
    rf"|(?<![\w.,-])(?:{_NUM},?[ ]+)(?i:{_LEAD})(?-i:[ ]+{_NAME})"
    rf"|(?<![\w.-])(?i:{_LEAD})(?-i:[ ]+{_NAME}),?[ ]+{_NUM}(?![\w.]\w)(?:{_UNIT})?"
    # Musterstraße 12 / Hans-Böckler-Str. 5/1 / Kerkstraat 7 / Lucasboulevard 7
    rf"|(?<![\w.-])(?:{_WORD}[ -])*[A-ZÀ-Þ][\w-]*(?i:{_GLUE})(?:[ ]+|(?<=\.))\d{{1,4}}[a-z]?(?:[-/]\d{{1,4}}[a-z]?)?(?![\w.]\w|[/-]\d)"
)


class StreetAddressRecognizer(_CandidateRecognizer):
    """A street line: a number plus a named street with a street-type word (optionally unit, city, state, ZIP)."""

    ENTITY = "STREET_ADDRESS"

    def spans(self, text):
        return [_trim(text, m.start(), m.end()) for m in _ADDRESS.finditer(text)]


def _trim(text: str, start: int, end: int):
    while end > start and text[end - 1] in " ,.":
        end -= 1
    return start, end
