"""Seeded generator of web-like text: the demo corpus and realistic noise for benchmarks.

Everything here is pure Python (``random.Random``), deterministic given the seed, and fast enough
to generate a million documents for the dedup scale benchmark. Nothing is copied from real data:
the articles are built from a small built-in vocabulary and sentence templates.

Document kinds in the demo corpus (``demo_kind``), each a known share of the corpus (``DEMO_MIX``):

- ``article``          multi-paragraph English prose that passes the Gopher and C4 quality rules
- ``near_duplicate``   an earlier article with typos, boilerplate, reordered paragraphs, truncation
- ``exact_duplicate``  an earlier article, byte for byte, under another id and URL
- ``pii``              an article with e-mails, phone numbers, IPs, card numbers, IBANs, SSNs
- ``non_english``      German, French, Spanish, Russian or Chinese prose (``demo_lang``)
- ``boilerplate``      navigation menus, cookie banners, legal links, JavaScript warnings
- ``spam``             keyword stuffing, repeated lines and SEO link lists
- ``short``            empty or nearly empty pages

Ground truth rides along in extra keys: ``demo_kind`` always, ``demo_lang`` for non-English
documents, ``demo_duplicate_of`` (the id of the source article) for both duplicate kinds and
``demo_pii`` (the injected spans) for PII documents.

The edit operations (``typo_edits``, ``insert_boilerplate``, ``reorder_paragraphs``, ``truncate``,
``near_duplicate``, ``inject_pii``, ``inject_trigger``) take a ``random.Random`` (or an int seed)
so benchmarks can reuse them on real documents, e.g. through ``make_benchmark_corpus``.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import random
import re
import string
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------------------------------------
# English vocabulary: shared words plus one block per topic.
# ---------------------------------------------------------------------------------------------

GENERAL_ADJECTIVES = (
    "important new small large recent local public difficult simple common strong clear major "
    "early modern careful complex popular surprising unusual familiar practical serious steady "
    "remarkable quiet rapid gradual detailed broad narrow expensive affordable reliable useful "
    "ambitious cautious promising controversial obvious subtle valuable"
).split()

# (base form, past form); only verbs whose past participle equals the past tense.
GENERAL_VERBS = [tuple(v.split(":")) for v in (
    "change:changed improve:improved support:supported affect:affected reduce:reduced "
    "increase:increased create:created develop:developed test:tested study:studied share:shared "
    "replace:replaced protect:protected use:used explain:explained describe:described "
    "question:questioned examine:examined expand:expanded limit:limited shape:shaped "
    "transform:transformed build:built make:made find:found keep:kept hold:held bring:brought "
    "review:reviewed measure:measured promote:promoted challenge:challenged welcome:welcomed"
).split()]

CONNECTORS = (
    "However,|In addition,|Meanwhile,|As a result,|At the same time,|For example,|In fact,|"
    "Even so,|By contrast,|Not surprisingly,|In many cases,|Today,|Still,|Later,|Since then,|"
    "On the other hand,|In practice,|For now,"
).split("|")

TIME_PHRASES = (
    "last year|in recent months|earlier this week|in 2019|during the summer|over the weekend|"
    "at the start of the decade|two years ago|this spring|in the late 1990s|last month|"
    "in the autumn|a decade ago|in 2021|earlier this year|over the past few weeks|in 2016|"
    "at the end of the season|in the early morning|this winter"
).split("|")

QUANTITIES = (
    "dozens of|hundreds of|thousands of|several|a handful of|many|more than a hundred|a few|"
    "a growing number of|some|most of the|a small group of"
).split("|")

CITIES = (
    "Boston|Chicago|Denver|Seattle|Austin|Portland|Atlanta|Toronto|Vancouver|Dublin|Edinburgh|"
    "Manchester|Leeds|Sydney|Melbourne|Auckland|Cape Town|Nairobi|Lagos|Mumbai|Singapore|Manila|"
    "Oslo|Helsinki|Lisbon|Prague|Vienna|Zurich|Montreal|Phoenix|Nashville|Pittsburgh|Glasgow|"
    "Bristol|Brisbane|Wellington|Calgary|Ottawa|Detroit|Baltimore"
).split("|")


def _topic(nouns: str, people: str, adjectives: str, verbs: str) -> dict[str, list]:
    return {
        "N": nouns.split(),
        "P": people.split(),
        "A": adjectives.split() + GENERAL_ADJECTIVES,
        "VERB": [tuple(v.split(":")) for v in verbs.split()] + GENERAL_VERBS,
    }


TOPICS: dict[str, dict[str, list]] = {
    "science": _topic(
        "experiment laboratory telescope molecule hypothesis theory sample dataset microscope "
        "protein cell genome particle galaxy planet climate ocean glacier fossil species enzyme "
        "measurement instrument satellite orbit detector reaction compound virus bacterium "
        "neuron signal model observation result method journal discovery mission field",
        "researchers scientists biologists physicists chemists astronomers students engineers "
        "geologists technicians",
        "scientific experimental theoretical microscopic chemical biological physical genetic "
        "molecular cosmic distant rare precise measurable",
        "observe:observed analyze:analyzed detect:detected confirm:confirmed publish:published "
        "record:recorded calculate:calculated sequence:sequenced simulate:simulated"),
    "technology": _topic(
        "smartphone laptop network server database algorithm processor battery software browser "
        "application platform website sensor robot chip camera display keyboard cloud startup "
        "update interface protocol cable router drone printer screen tablet headset engine "
        "feature device system prototype code service account storage",
        "developers engineers designers users programmers customers founders analysts "
        "investors hackers",
        "digital wireless mobile automated virtual open online secure fast portable smart "
        "electric electronic compact",
        "install:installed launch:launched upgrade:upgraded download:downloaded connect:connected "
        "design:designed program:programmed release:released fix:fixed"),
    "health": _topic(
        "patient hospital clinic doctor nurse treatment vaccine medicine therapy diet exercise "
        "symptom diagnosis surgery heart brain muscle sleep infection disease condition trial "
        "prescription pharmacy injury recovery habit nutrient vitamin routine appointment "
        "checkup program risk study screening",
        "doctors nurses patients physicians surgeons therapists parents pharmacists "
        "nutritionists volunteers",
        "medical healthy clinical chronic mental physical daily preventive mild severe "
        "effective safe painful balanced",
        "treat:treated prevent:prevented diagnose:diagnosed recommend:recommended "
        "prescribe:prescribed monitor:monitored recover:recovered"),
    "sports": _topic(
        "match tournament team coach player stadium season league goal race marathon trophy "
        "championship game victory defeat training injury contract transfer referee ball bike "
        "track pitch court final record medal score fan club squad captain rival schedule",
        "players coaches fans athletes runners cyclists referees supporters teammates "
        "managers",
        "athletic competitive professional amateur defensive offensive fit decisive narrow "
        "dramatic veteran young talented",
        "win:won score:scored defend:defended train:trained coach:coached sign:signed "
        "celebrate:celebrated qualify:qualified"),
    "cooking": _topic(
        "recipe kitchen oven flour butter sauce soup bread dough garlic onion tomato pepper "
        "cheese pasta rice salad dessert cake chocolate spice herb vegetable fruit knife pan "
        "bowl restaurant chef menu dinner breakfast lunch ingredient flavor meal market",
        "cooks chefs bakers diners families farmers guests critics waiters readers",
        "fresh crispy savory sweet spicy tender golden creamy seasonal homemade rustic "
        "simple warm delicious",
        "bake:baked roast:roasted chop:chopped stir:stirred season:seasoned taste:tasted "
        "serve:served mix:mixed"),
    "travel": _topic(
        "journey flight airport hotel beach island mountain trail village museum harbor "
        "bridge castle train ticket passport luggage guide map route festival market coast "
        "lake valley hostel cruise road trip destination tour view season border cafe square",
        "travelers tourists visitors hikers guides locals pilots backpackers residents "
        "photographers",
        "scenic remote crowded quiet historic coastal tropical ancient charming busy "
        "affordable peaceful cheap",
        "visit:visited explore:explored book:booked travel:traveled reach:reached "
        "cross:crossed discover:discovered"),
    "history": _topic(
        "empire kingdom war treaty revolution monarchy republic archive manuscript monument "
        "ruin dynasty colony parliament constitution battle siege ship cathedral temple "
        "artifact letter map document chronicle century era city wall tomb coin palace "
        "army fortress trade",
        "historians archaeologists scholars soldiers merchants monks settlers citizens "
        "kings peasants",
        "ancient medieval colonial imperial royal military political religious forgotten "
        "legendary historical early",
        "conquer:conquered rule:ruled sign:signed excavate:excavated restore:restored "
        "defeat:defeated settle:settled"),
    "finance": _topic(
        "market stock bond bank loan mortgage budget inflation interest rate currency "
        "economy investment fund portfolio salary tax price profit revenue debt credit "
        "payment account pension index share dividend deal merger forecast report quarter "
        "sector growth",
        "investors economists analysts traders bankers savers borrowers shareholders "
        "accountants regulators",
        "financial economic fiscal monetary global annual quarterly volatile stable "
        "profitable risky corporate",
        "invest:invested borrow:borrowed lend:lent save:saved trade:traded "
        "forecast:forecast regulate:regulated"),
}

# Sentence templates. Slots: N noun, P people, A adjective, AN "a/an"+adjective, VB verb base,
# VD verb past (also participle), T time phrase, Q quantity, C city, X connector, NUM, YEAR.
# Digits after a slot name just draw it again (N2 is a second, independent noun).
SENTENCE_TEMPLATES = [
    "{X} the {A} {N} {VD} the {N2} in {C}.",
    "{T}, {P} {VD} a new approach to the {N}.",
    "{P} in {C} {VD} the {N} {T}.",
    "{T}, the {N} {VD} {Q} {P} who had been waiting for {AN} {N2}.",
    "According to {P}, the {A} {N} is one of the most {A2} parts of the {N2}.",
    "This is why many {P} believe that the {N} will {VB} the {N2} over the next {NUM} years.",
    "{X} {P} have {VD} the {N} for {NUM} years, and they say it has never been more {A}.",
    "It is not clear whether the {N} can {VB} the {N2} without {A} support from {P}.",
    "The {N} was {VD} by {P} from {C}, who wanted to {VB} the {N2}.",
    "Many of the {P} we spoke to said that the {A} {N} had {VD} their {N2}.",
    "{X} the cost of the {N} rose by {NUM} percent, which {VD} the {N2} for {P}.",
    "She {VD} the {N} with {AN} {N2} and {AN2} {N3}.",
    "If the {N} continues to {VB} the {N2}, {P} may have to {VB2} their plans.",
    "The {A} {N} has become {AN2} topic for {P} and {P2} alike.",
    "{T}, a group of {P} from {C} {VD} {AN} {N} that could {VB} the {N2}.",
    "Nobody expected the {N} to {VB} the {N2} so quickly, but the {P} were ready.",
    "There are {Q} {P} who {VB} the {N} every day.",
    "In {C}, the {N} is still {A}, and {P} are working to {VB} it.",
    "What makes the {N} so {A} is the way it {VD} the {N2}.",
    "Some {P} argue that the {N} is too {A}, while others see it as {AN2} {N2}.",
    "For {P}, the most {A} question is how to {VB} the {N} without losing the {N2}.",
    "The report, published {T}, {VD} {Q} {P} and their {N}.",
    "{X} it was the {N} that {VD} the {A} {N2}.",
    "Experts say the {N} should be {VD} before the {N2} is {VD2}.",
    "We asked {NUM} {P} about the {N}, and most of them {VD} the {A} {N2}.",
    "Over the past {NUM} years, the {N} has {VD} the way {P} think about the {N2}.",
    "The {N} and the {N2} are closely linked, as {P} in {C} {VD} {T}.",
    "One of the {P} told us that the {A} {N} was the reason they {VD} the {N2}.",
    "That is {AN} change for a {N} that has long been {A2}.",
    "Local {P} {VD} the {N} as {AN} step toward a better {N2}.",
    "The {N} may seem {A}, but it has {AN2} effect on the {N2}.",
    "{X} the {P} {VD} a plan to {VB} the {N} by {YEAR}.",
    "Critics point out that the {N} is {A} and that it could {VB} the {N2}.",
    "As the {N} grows, {P} will need to {VB} their {N2} and {VB2} the {N3}.",
    "Few {P} had heard of the {N} until it {VD} the {N2} in {C}.",
    "The idea behind the {N} is simple: {VB} the {N2} and let {P} decide.",
    "Is the {N} really as {A} as {P} claim?",
    "{X} the {N} {VD} {Q} {P} to {C} {T}.",
    "Without the {N}, the {N2} would be far less {A}.",
    "He {VD} the {A} {N} {T}, long before most {P} had noticed it.",
    "The {P} hope to {VB} the {N} again {T}, if the {N2} allows it.",
    "Why do so many {P} {VB} the {N} when the {N2} is so {A}?",
]

TITLE_TEMPLATES = [
    "How {P} in {C} {VD} the {N}",
    "The {A} {N}: what {P} need to know",
    "Why the {N} matters for {P}",
    "{A} {N} {VD} {Q} {P}",
    "Inside the {A} world of the {N}",
    "{NUM} things {P} learned about the {N}",
    "The {N} that {VD} {C}",
    "A closer look at the {A} {N}",
]

_SLOT = re.compile(r"\{([A-Z]+)\d?\}")


def _compile(template: str) -> list[tuple[bool, str]]:
    """Split a template into (is_slot, text) parts once, so filling it is a tight loop."""
    parts: list[tuple[bool, str]] = []
    pos = 0
    for m in _SLOT.finditer(template):
        if m.start() > pos:
            parts.append((False, template[pos:m.start()]))
        parts.append((True, m.group(1)))
        pos = m.end()
    if pos < len(template):
        parts.append((False, template[pos:]))
    return parts


_SENTENCES = [_compile(t) for t in SENTENCE_TEMPLATES]
_TITLES = [_compile(t) for t in TITLE_TEMPLATES]
_TOPIC_NAMES = sorted(TOPICS)
_SHARED_POOLS = {"T": TIME_PHRASES, "Q": QUANTITIES, "C": CITIES, "X": CONNECTORS}


def _fill(parts: list[tuple[bool, str]], vocab: dict[str, list], rng: random.Random) -> str:
    # rng.random() indexing instead of rng.choice: several times faster in this hot loop.
    rnd = rng.random
    out = []
    for is_slot, key in parts:
        if not is_slot:
            out.append(key)
            continue
        pool = vocab.get(key) or _SHARED_POOLS.get(key)
        if pool is not None:
            out.append(pool[int(rnd() * len(pool))])
        elif key == "VB" or key == "VD":
            verbs = vocab["VERB"]
            out.append(verbs[int(rnd() * len(verbs))][key == "VD"])
        elif key == "AN":
            adjs = vocab["A"]
            adj = adjs[int(rnd() * len(adjs))]
            out.append(("an " if adj[0] in "aeiou" else "a ") + adj)
        elif key == "NUM":
            out.append(str(2 + int(rnd() * 39)))
        elif key == "YEAR":
            out.append(str(2025 + int(rnd() * 16)))
        else:
            raise KeyError(f"unknown template slot {key!r}")
    s = "".join(out)
    return s[0].upper() + s[1:]


def english_sentence(rng: random.Random, topic: str | None = None) -> str:
    """One English sentence about ``topic`` (a key of ``TOPICS``; random when None)."""
    vocab = TOPICS[topic or rng.choice(_TOPIC_NAMES)]
    return _fill(rng.choice(_SENTENCES), vocab, rng)


def english_article(rng: random.Random, topic: str | None = None,
                    paragraphs: tuple[int, int] = (3, 6),
                    sentences: tuple[int, int] = (3, 6)) -> str:
    """A title line and a few paragraphs of English prose, paragraphs separated by a blank line.

    Typically 150-500 words; passes the Gopher quality and repetition rules and the C4 rules."""
    topic = topic or rng.choice(_TOPIC_NAMES)
    vocab = TOPICS[topic]
    title = _fill(rng.choice(_TITLES), vocab, rng)
    sizes = [rng.randint(*sentences) for _ in range(rng.randint(*paragraphs))]
    # No template twice in one article: repeated template text would trip the Gopher
    # duplicate n-gram rules.
    order = rng.sample(_SENTENCES, min(sum(sizes), len(_SENTENCES)))
    paras = [title]
    pos = 0
    for size in sizes:
        paras.append(" ".join(_fill(t, vocab, rng) for t in order[pos:pos + size]))
        pos += size
    return "\n\n".join(p for p in paras if p)


# ---------------------------------------------------------------------------------------------
# Other languages: short template sets with a few slot lists, enough for cld3 to be sure.
# ---------------------------------------------------------------------------------------------

def _lang(subjects: str, objects: str, times: str, places: str, adjectives: str,
          templates: Sequence[str], joiner: str = " ") -> dict[str, Any]:
    return {
        "S": subjects.split("|"), "O": objects.split("|"), "T": times.split("|"),
        "C": places.split("|"), "A": adjectives.split("|"),
        "templates": [_compile(t) for t in templates], "joiner": joiner,
    }


LANGUAGES: dict[str, dict[str, Any]] = {
    "de": _lang(
        "die Stadtverwaltung|der Verein|die Bundesregierung|das Unternehmen|die Schule|"
        "der Bürgermeister|die Universität|das Museum|die Gemeinde|der Verband|das Krankenhaus|"
        "die Forschungsgruppe|der Landkreis",
        "einen neuen Plan|mehrere Projekte|ein neues Konzept|zusätzliche Mittel|eine Studie|"
        "neue Regeln|einen ausführlichen Bericht|ein Programm für Kinder|bessere Verbindungen|"
        "eine Ausstellung|neue Arbeitsplätze|eine Umfrage",
        "im vergangenen Jahr|seit einigen Monaten|am Wochenende|in dieser Woche|im Frühjahr|"
        "bis zum Ende des Jahres|nach langer Diskussion|vor zwei Wochen",
        "in Berlin|in München|in Hamburg|in der Region|im Norden des Landes|in Köln|in Leipzig|"
        "auf dem Land",
        "wichtig|schwierig|notwendig|teuer|erfolgreich|umstritten|dringend|sinnvoll",
        [
            "{T} hat {S} {C} {O} vorgestellt.",
            "{S} will {T} {O} umsetzen, um die Lage zu verbessern.",
            "Nach Angaben von Experten ist das Vorhaben {A}, aber auch {A2}.",
            "Viele Bürger {C} sind mit der Entwicklung nicht zufrieden und fordern {O}.",
            "Die Kosten für {O} sind deutlich gestiegen, sagte ein Sprecher.",
            "{S} prüft derzeit, ob {O} {C} möglich ist.",
            "Es ist noch nicht klar, wann {S} über {O} entscheiden wird.",
            "Für die Menschen {C} ist das sehr {A}.",
            "Wir haben mit mehreren Fachleuten gesprochen, die {O} für {A} halten.",
            "Auch {S} unterstützt {O}, obwohl die Finanzierung noch offen ist.",
            "Die Diskussion über {O} wird {T} fortgesetzt.",
            "Nach Ansicht vieler Beobachter war die Entscheidung {A} und längst überfällig.",
            "Inzwischen interessieren sich auch andere Gemeinden {C} für {O}.",
            "Bis jetzt gibt es jedoch keine genauen Zahlen dazu.",
            "Ob das Projekt tatsächlich {A} ist, wird sich erst in einigen Jahren zeigen.",
        ]),
    "fr": _lang(
        "la mairie|le gouvernement|l'entreprise|l'université|le conseil régional|l'association|"
        "le ministère|la commune|l'hôpital|le musée|la banque|l'équipe de recherche",
        "un nouveau projet|plusieurs programmes|une étude importante|de nouvelles règles|"
        "un rapport détaillé|des moyens supplémentaires|une exposition|un plan pour les jeunes|"
        "des emplois|une enquête",
        "l'année dernière|depuis quelques mois|ce week-end|cette semaine|au printemps|"
        "d'ici la fin de l'année|après de longues discussions|il y a deux semaines",
        "à Paris|à Lyon|à Marseille|dans la région|dans le nord du pays|à Bordeaux|à Toulouse|"
        "en Bretagne",
        "nécessaire|difficile|utile|indispensable|raisonnable|efficace|rapide|fragile",
        [
            "{T}, {S} a présenté {O} {C}.",
            "Selon les experts, cette décision est {A}, mais elle reste {A2}.",
            "De nombreux habitants {C} ne sont pas satisfaits et demandent {O}.",
            "Le coût de ce projet a fortement augmenté, a déclaré un porte-parole.",
            "{S} étudie actuellement la possibilité de lancer {O} {C}.",
            "On ne sait pas encore quand {S} prendra une décision sur ce dossier.",
            "Pour les habitants {C}, c'est une étape {A}.",
            "Nous avons parlé avec plusieurs spécialistes qui jugent cette mesure {A}.",
            "{S} soutient aussi {O}, même si le financement n'est pas encore assuré.",
            "Le débat sur ce sujet se poursuivra {T}.",
            "Pour beaucoup d'observateurs, cette décision était {A} et attendue depuis longtemps.",
            "Il faudra attendre plusieurs années pour savoir si le projet est vraiment {A}.",
            "Pour le moment, il n'existe pas de chiffres précis à ce sujet.",
            "D'autres communes {C} s'intéressent déjà à cette idée.",
        ]),
    "es": _lang(
        "el ayuntamiento|el gobierno|la empresa|la universidad|la asociación|el ministerio|"
        "el hospital|el museo|el banco|el equipo de investigación|la comunidad|el consejo regional",
        "un nuevo proyecto|varios programas|un estudio importante|nuevas normas|"
        "un informe detallado|más recursos|una exposición|un plan para los jóvenes|"
        "nuevos empleos|una encuesta",
        "el año pasado|desde hace unos meses|este fin de semana|esta semana|en primavera|"
        "antes de que termine el año|tras largas negociaciones|hace dos semanas",
        "en Madrid|en Barcelona|en Sevilla|en la región|en el norte del país|en Valencia|"
        "en Bilbao|en Andalucía",
        "necesaria|difícil|útil|importante|urgente|razonable|eficaz|arriesgada",
        [
            "{T}, {S} presentó {O} {C}.",
            "Según los expertos, la medida es {A}, pero también {A2}.",
            "Muchos vecinos {C} no están satisfechos y piden {O}.",
            "El coste de las obras ha aumentado mucho, según explicó un portavoz.",
            "{S} estudia ahora la posibilidad de poner en marcha {O} {C}.",
            "Todavía no se sabe cuándo {S} tomará una decisión sobre el asunto.",
            "Para los habitantes {C}, la medida es muy {A}.",
            "Hemos hablado con varios especialistas que consideran que la propuesta es {A}.",
            "{S} también apoya {O}, aunque la financiación todavía no está garantizada.",
            "El debate sobre este asunto continuará {T}.",
            "Para muchos observadores, la decisión era {A} y llegaba tarde.",
            "Habrá que esperar varios años para saber si el proyecto funciona.",
            "Por ahora no existen cifras exactas sobre este tema.",
            "Otras ciudades {C} ya se interesan por {O}.",
        ]),
    "ru": _lang(
        "городская администрация|правительство|компания|университет|министерство|больница|"
        "местный музей|банк|исследовательская группа|региональный совет",
        "новый проект|несколько программ|важное исследование|новые правила|подробный доклад|"
        "дополнительные средства|выставку|план для молодёжи|новые рабочие места|опрос",
        "в прошлом году|в последние месяцы|в эти выходные|на этой неделе|весной|до конца года|"
        "после долгих обсуждений|две недели назад",
        "в Москве|в Петербурге|в Казани|в регионе|на севере страны|в Новосибирске|"
        "в Екатеринбурге|в Самаре",
        "важное|сложное|необходимое|полезное|спорное|разумное|эффективное|дорогое",
        [
            "{T} {S} представляет {O} {C}.",
            "По словам экспертов, это решение {A}, но при этом {A2}.",
            "Многие жители {C} недовольны ситуацией и ждут перемен.",
            "Стоимость работ значительно выросла, сообщил представитель.",
            "Сейчас {S} изучает возможность запустить {O} {C}.",
            "Пока неясно, когда {S} примет окончательное решение.",
            "Для жителей {C} это решение очень {A}.",
            "Мы поговорили с несколькими специалистами, которые считают эту меру необходимой.",
            "{S} также поддерживает {O}, хотя финансирование ещё не гарантировано.",
            "Обсуждение этого вопроса продолжится {T}.",
            "Многие наблюдатели считают, что это решение давно назрело.",
            "Только через несколько лет станет ясно, насколько эффективен этот проект.",
            "Точных данных по этой теме пока нет.",
            "Другие города уже проявляют интерес к этой идее.",
        ]),
    "zh": _lang(
        "市政府|这家公司|当地大学|研究团队|卫生部门|教育局|博物馆|银行|区政府|行业协会",
        "一个新项目|多项计划|一份详细报告|新的规定|一项重要研究|更多资金|一次展览|青年就业计划|"
        "新的工作岗位|一项调查",
        "去年|最近几个月|本周末|这周|今年春天|年底之前|经过长时间讨论后|两周前",
        "在北京|在上海|在广州|在深圳|在成都|在杭州|在本地区|在北方地区",
        "非常重要|比较困难|十分必要|很有意义|存在争议|相当合理|效果明显|成本很高",
        [
            "{T}，{S}{C}推出了{O}。",
            "专家表示，这项决定{A}，但也{A2}。",
            "许多居民对目前的情况并不满意，希望政府提供{O}。",
            "一位发言人说，工程费用已经大幅增加。",
            "{S}目前正在研究{C}启动{O}的可能性。",
            "目前还不清楚{S}什么时候会作出最终决定。",
            "对于当地居民来说，这一变化{A}。",
            "我们采访了几位专家，他们认为这项措施{A}。",
            "{S}也支持{O}，但资金问题还没有解决。",
            "关于这个问题的讨论将继续进行。",
            "许多观察人士认为，这个决定早就应该做出。",
            "这个项目是否真正有效，还需要几年时间才能看出来。",
            "目前还没有关于这个问题的准确数据。",
            "其他城市也已经对{O}表现出兴趣。",
        ], joiner=""),
}


def foreign_text(lang: str, rng: random.Random, paragraphs: tuple[int, int] = (2, 4),
                 sentences: tuple[int, int] = (3, 5)) -> str:
    """A few paragraphs of prose in ``lang`` (a key of ``LANGUAGES``)."""
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; known: {sorted(LANGUAGES)}")
    spec = LANGUAGES[lang]
    choice = rng.choice
    sizes = [rng.randint(*sentences) for _ in range(rng.randint(*paragraphs))]
    # Each template at most once per document, as for English (Gopher repetition rules).
    order = rng.sample(spec["templates"], min(sum(sizes), len(spec["templates"])))
    paras = []
    pos = 0
    for size in sizes:
        sents = []
        for template in order[pos:pos + size]:
            s = "".join(choice(spec[key]) if is_slot else key for is_slot, key in template)
            sents.append(s[0].upper() + s[1:])
        pos += size
        if sents:
            paras.append(spec["joiner"].join(sents))
    return "\n\n".join(paras)


# ---------------------------------------------------------------------------------------------
# Boilerplate, spam and near-empty pages.
# ---------------------------------------------------------------------------------------------

NAV_ITEMS = ("Home|About|About Us|Contact|Blog|News|Shop|Products|Services|Login|Sign up|"
             "Register|Careers|Support|FAQ|Help|Pricing|Events|Gallery|Team|Search|Menu").split("|")
SECTIONS = ("Products|Category|Resources|Archive|Community|Downloads|Offers|Locations|"
            "Reviews|Guides|Press").split("|")
COOKIE_LINES = [
    "We use cookies to improve your experience on our website. By continuing to browse, you "
    "agree to our use of cookies.",
    "This site uses cookies",
    "Accept all cookies",
    "Manage preferences",
    "Cookie settings",
    "We value your privacy",
    "Reject all",
]
JS_LINES = [
    "Please enable JavaScript in your browser to use this site.",
    "JavaScript is disabled",
    "You need to enable JavaScript to run this app.",
    "Your browser does not support JavaScript",
]
FOOTER_LINES = [
    "Privacy Policy | Terms of Use | Cookie Policy | Accessibility | Sitemap",
    "Terms and Conditions",
    "Privacy Policy",
    "Subscribe to our newsletter",
    "Enter your email address",
    "Subscribe",
    "Follow us on Facebook Twitter Instagram",
    "Share: Facebook Twitter LinkedIn Email",
    "Back to top",
    "Related posts",
    "Read more",
    "Load more",
    "Powered by WordPress",
    "All rights reserved",
]
SITE_WORDS = ("harbor|summit|daily|metro|river|maple|north|bright|cedar|pioneer|atlas|beacon|"
              "lantern|orchard|granite|meadow|compass|falcon|willow|canyon").split("|")
SITE_SUFFIXES = ("news|times|post|journal|hub|review|today|weekly|blog|guide").split("|")


def _site(rng: random.Random) -> str:
    return f"{rng.choice(SITE_WORDS)}{rng.choice(SITE_SUFFIXES)}.example"


def _site_title(site: str) -> str:
    name = site.split(".")[0]
    for suffix in SITE_SUFFIXES:
        if name.endswith(suffix) and name != suffix:
            return f"{name[:-len(suffix)].title()} {suffix.title()}"
    return name.title()


def boilerplate_page(rng: random.Random, site: str | None = None) -> str:
    """Navigation, cookie banner, JavaScript warning and legal footer: a page with no content."""
    site = site or _site(rng)
    lines = ["Skip to main content"]
    nav = rng.sample(NAV_ITEMS, rng.randint(4, 9))
    sep = rng.choice([" | ", "\n", " · "])
    lines.append(sep.join(nav))
    lines.append(f"Home > {rng.choice(SECTIONS)} > {rng.choice(SECTIONS)}")
    lines += rng.sample(COOKIE_LINES, rng.randint(2, 4))
    lines.append(rng.choice(JS_LINES))
    if rng.random() < 0.5:
        lines += [english_sentence(rng)[:40].rsplit(" ", 1)[0] for _ in range(rng.randint(2, 4))]
    lines += rng.sample(FOOTER_LINES, rng.randint(4, 9))
    lines.append(f"© {rng.randint(2005, 2025)} {_site_title(site)}. All rights reserved.")
    return "\n".join(lines)


SPAM_KEYWORDS = ("cheap watches|replica handbags|online casino|weight loss pills|payday loans|"
                 "free followers|crypto signals|cheap flights|essay writing service|"
                 "casino bonus|diet pills|instant loans").split("|")
SPAM_LINES = [
    "Best {kw} online at the lowest price!!!",
    "Buy {kw} now and save {pct}% off",
    "{kw} {kw} {kw} cheap {kw} discount {kw}",
    "Click here for {kw} >>>",
    "100% guaranteed {kw}, free shipping worldwide",
    "Top {kw} in {city}",
    "{Kw} | Buy {kw} online | Best {kw} {year}",
    "Limited offer: {kw} for only ${price}",
]


def spam_page(rng: random.Random) -> str:
    """Keyword stuffing, the same lines over and over, and a list of SEO links."""
    kw = rng.choice(SPAM_KEYWORDS)
    slug = kw.replace(" ", "-")
    fields = {"kw": kw, "Kw": kw.title(), "pct": rng.choice([50, 70, 80, 90]),
              "city": rng.choice(CITIES), "year": rng.randint(2015, 2025),
              "price": rng.randint(5, 99)}
    block = [line.format(**fields) for line in rng.sample(SPAM_LINES, rng.randint(3, 5))]
    lines: list[str] = []
    for _ in range(rng.randint(4, 8)):
        lines += block
    host = f"{slug}-{rng.choice(SITE_WORDS)}.example"
    lines += [f"https://{host}/{slug}-{i}" for i in rng.sample(range(1, 500), rng.randint(5, 12))]
    lines.append(", ".join([kw, f"cheap {kw}", f"best {kw}", f"{kw} online"] * rng.randint(3, 8)))
    return "\n".join(lines)


SHORT_TEXTS = ["", " ", "\n", "Loading...", "404 Not Found", "Page not found", "Coming soon!",
               "Thanks for reading.", "Click here", "Error 503 Service Unavailable",
               "Under construction", "Redirecting...", "Access denied", "OK"]


def short_page(rng: random.Random) -> str:
    """An empty, near-empty or single-sentence page."""
    r = rng.random()
    if r < 0.6:
        return rng.choice(SHORT_TEXTS)
    if r < 0.8:
        return english_sentence(rng)
    return _fill(rng.choice(_TITLES), TOPICS[rng.choice(_TOPIC_NAMES)], rng)


# ---------------------------------------------------------------------------------------------
# Edit operations, reusable on real documents.
# ---------------------------------------------------------------------------------------------

def _as_rng(rng: random.Random | int) -> random.Random:
    if isinstance(rng, random.Random):
        return rng
    if isinstance(rng, int) and not isinstance(rng, bool):
        return random.Random(rng)
    raise TypeError(f"rng must be a random.Random or an int seed, got {type(rng).__name__}")


_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEIGHBOURS: dict[str, str] = {}
for _row_i, _row in enumerate(_KEYBOARD_ROWS):
    for _col, _ch in enumerate(_row):
        near = _row[max(0, _col - 1):_col] + _row[_col + 1:_col + 2]
        for _other in (_row_i - 1, _row_i + 1):
            if 0 <= _other < len(_KEYBOARD_ROWS) and _col < len(_KEYBOARD_ROWS[_other]):
                near += _KEYBOARD_ROWS[_other][_col]
        _NEIGHBOURS[_ch] = near
_WS_SPLIT = re.compile(r"(\s+)")


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 2:
        return word + word
    i = rng.randrange(len(word) - 1)
    op = rng.randrange(4)
    if op == 0:  # swap two neighbouring characters
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if op == 1:  # drop one
        return word[:i] + word[i + 1:]
    if op == 2:  # double one
        return word[:i + 1] + word[i] + word[i + 1:]
    ch = word[i].lower()  # hit a neighbouring key
    repl = rng.choice(_NEIGHBOURS.get(ch) or string.ascii_lowercase)
    return word[:i] + (repl.upper() if word[i].isupper() else repl) + word[i + 1:]


def _drop_one_letter(text: str, rng: random.Random) -> str:
    """Delete one character inside a random word of 3+ letters (a change that always shows)."""
    spots = [m.start() + 1 for m in re.finditer(r"[^\W\d_]{3,}", text)]
    if not spots:
        return text + " "
    at = rng.choice(spots)
    return text[:at] + text[at + 1:]


def typo_edits(text: str, rate: float, rng: random.Random | int) -> str:
    """Put a typo (swap, drop, double or neighbouring key) into ``rate`` of the words.

    The number of edited words is ``rate * n_words`` rounded up or down at random (so the
    expectation is exact); whitespace and line structure are kept."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"typo rate must be in [0, 1], got {rate}")
    rng = _as_rng(rng)
    tokens = _WS_SPLIT.split(text)
    word_idx = [i for i in range(0, len(tokens), 2) if tokens[i]]
    k = min(len(word_idx), int(len(word_idx) * rate + rng.random()))
    for i in rng.sample(word_idx, k):
        tokens[i] = _typo(tokens[i], rng)
    return "".join(tokens)


def insert_boilerplate(text: str, rng: random.Random | int) -> str:
    """Wrap ``text`` in a few lines of site chrome: a menu on top and/or a footer below."""
    rng = _as_rng(rng)
    head: list[str] = []
    tail: list[str] = []
    where = rng.randrange(3)  # 0: top, 1: bottom, 2: both
    if where != 1:
        head.append(" | ".join(rng.sample(NAV_ITEMS, rng.randint(3, 6))))
        if rng.random() < 0.5:
            head.append(rng.choice(COOKIE_LINES))
    if where != 0:
        tail += rng.sample(FOOTER_LINES, rng.randint(1, 3))
    return "\n".join(head + [text] + tail)


def reorder_paragraphs(text: str, rng: random.Random | int) -> str:
    """Move one paragraph (blocks separated by a blank line) to another position."""
    rng = _as_rng(rng)
    paras = text.split("\n\n")
    if len(paras) < 2:
        return text
    i = rng.randrange(len(paras))
    para = paras.pop(i)
    j = rng.choice([p for p in range(len(paras) + 1) if p != i])
    paras.insert(j, para)
    return "\n\n".join(paras)


def truncate(text: str, frac: float) -> str:
    """Keep the first ``frac`` of ``text`` (by characters), cut back to a whitespace boundary."""
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"truncate fraction must be in [0, 1], got {frac}")
    if frac >= 1.0:
        return text
    cut = int(len(text) * frac)
    space = text.rfind(" ", 0, cut + 1)
    newline = text.rfind("\n", 0, cut + 1)
    return text[:max(space, newline, 0)].rstrip()


def near_duplicate(text: str, edit_rate: float, rng: random.Random | int) -> str:
    """A realistic near copy: typos in ``edit_rate`` of the words, then, each with probability
    0.3, a moved paragraph, added site chrome, and the tail cut by up to ``2 * edit_rate``.

    Word 5-gram Jaccard with the original is close to s / (2 - s) with s = (1 - edit_rate) ** 5
    (each typo breaks the five shingles that cover it), a little lower because of the chrome,
    the moved paragraph and the cut: on the generated articles it averages 0.88 at 0.01, 0.73 at
    0.03 and 0.40 at 0.1 (pinned in tests/test_corpus_gen.py)."""
    if not 0.0 <= edit_rate <= 0.5:
        raise ValueError(f"edit_rate must be in [0, 0.5], got {edit_rate}")
    rng = _as_rng(rng)
    out = typo_edits(text, edit_rate, rng)
    if rng.random() < 0.3:
        out = reorder_paragraphs(out, rng)
    if rng.random() < 0.3:
        out = insert_boilerplate(out, rng)
    if rng.random() < 0.3:
        out = truncate(out, 1.0 - rng.uniform(0.0, 2 * edit_rate))
    return out


# ---------------------------------------------------------------------------------------------
# PII values (all valid: Luhn, IBAN mod-97, SSN ranges, real area codes) and their injection.
# ---------------------------------------------------------------------------------------------

FIRST_NAMES = ("james mary john patricia robert jennifer michael linda david elizabeth william "
               "susan anna lukas sofia mateo chloe noah emma liam olivia ethan ava omar priya "
               "wei yuki carlos ines").split()
LAST_NAMES = ("smith johnson brown garcia miller davis martinez lopez wilson anderson taylor "
              "thomas moore martin lee walker hall young king wright scott green baker adams "
              "nelson carter mitchell keller novak rossi").split()
EMAIL_DOMAINS = ("example.com example.org example.net mail.example.com inbox.example.org "
                 "corp.example.com").split()
US_AREA_CODES = ("201 202 206 212 213 214 303 305 312 313 404 415 503 512 602 617 646 702 713 "
                 "718 773 801 816 919").split()


def fake_email(rng: random.Random) -> str:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    local = rng.choice([f"{first}.{last}", f"{first[0]}{last}{rng.randint(1, 99)}",
                        f"{first}_{last}", f"{first}{rng.randint(1000, 9999)}"])
    return f"{local}@{rng.choice(EMAIL_DOMAINS)}"


def fake_phone(rng: random.Random) -> str:
    """A valid phone number (per libphonenumber, parsed with default region US) in one of
    several common formats: US national and international, London, Berlin, Paris."""
    kind = rng.randrange(8)
    if kind < 5:
        area = rng.choice(US_AREA_CODES)
        exch = f"{rng.randint(2, 9)}{rng.randint(0, 9)}{rng.randint(2, 9)}"  # never N11
        line = f"{rng.randint(0, 9999):04d}"
        return [f"({area}) {exch}-{line}", f"{area}-{exch}-{line}", f"{area}.{exch}.{line}",
                f"+1 {area} {exch} {line}", f"+1-{area}-{exch}-{line}"][kind]
    if kind == 5:
        return f"+44 20 7{rng.randint(0, 999):03d} {rng.randint(0, 9999):04d}"
    if kind == 6:
        return f"+49 30 {rng.randint(10_000_000, 99_999_999)}"
    pairs = " ".join(f"{rng.randint(0, 99):02d}" for _ in range(4))
    return f"+33 1 {pairs}"


def fake_ipv4(rng: random.Random) -> str:
    first = rng.choice([o for o in range(1, 224) if o not in (10, 127)])
    return f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def luhn_check_digit(payload: str) -> str:
    """The digit that makes ``payload + digit`` pass the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:  # these get doubled once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def fake_credit_card(rng: random.Random) -> str:
    """A Luhn-valid Visa, Mastercard, Amex or Discover number, grouped as cards print them."""
    prefix, length = rng.choice([("4", 16), (str(rng.randint(51, 55)), 16),
                                 (str(rng.randint(2221, 2720)), 16),
                                 (rng.choice(["34", "37"]), 15), ("6011", 16)])
    payload = prefix + "".join(str(rng.randint(0, 9)) for _ in range(length - len(prefix) - 1))
    number = payload + luhn_check_digit(payload)
    sep = rng.choice([" ", "-", ""])
    groups = (4, 6, 5) if length == 15 else (4, 4, 4, 4)
    parts, pos = [], 0
    for g in groups:
        parts.append(number[pos:pos + g])
        pos += g
    return sep.join(parts)


def _iban_digits(s: str) -> str:
    return "".join(str(int(ch, 36)) for ch in s)


def iban_check_digits(country: str, bban: str) -> str:
    return f"{98 - int(_iban_digits(bban + country + '00')) % 97:02d}"


def _digits(rng: random.Random, n: int) -> str:
    return "".join(str(rng.randint(0, 9)) for _ in range(n))


def _spanish_control(digits: str) -> str:
    weights = (1, 2, 4, 8, 5, 10, 9, 7, 3, 6)
    d = 11 - sum(int(c) * w for c, w in zip(digits, weights)) % 11
    return str({11: 0, 10: 1}.get(d, d))


def fake_iban(rng: random.Random) -> str:
    """A German, British, French or Spanish IBAN with valid check digits (and valid national
    check digits for France and Spain), printed compact or in groups of four."""
    country = rng.choice(["DE", "GB", "FR", "ES"])
    if country == "DE":
        bban = str(rng.randint(1, 8)) + _digits(rng, 7) + _digits(rng, 10)
    elif country == "GB":
        bban = rng.choice(["NWBK", "BARC", "LOYD", "MIDL", "HBUK"]) + _digits(rng, 14)
    elif country == "FR":
        bank, branch, account = _digits(rng, 5), _digits(rng, 5), _digits(rng, 11)
        key = 97 - (89 * int(bank) + 15 * int(branch) + 3 * int(account)) % 97
        bban = f"{bank}{branch}{account}{key:02d}"
    else:
        bank, branch, account = _digits(rng, 4), _digits(rng, 4), _digits(rng, 10)
        bban = (bank + branch + _spanish_control("00" + bank + branch)
                + _spanish_control(account) + account)
    iban = country + iban_check_digits(country, bban) + bban
    if rng.random() < 0.5:
        return iban
    return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))


def fake_ssn(rng: random.Random) -> str:
    """A US SSN in the valid ranges: area 001-899 but not 666, group 01-99, serial 0001-9999."""
    area = rng.randint(1, 898)
    area = area + 1 if area >= 666 else area
    sep = rng.choice(["-", "-", "-", " "])
    return f"{area:03d}{sep}{rng.randint(1, 99):02d}{sep}{rng.randint(1, 9999):04d}"


PII_GENERATORS = {
    "email": fake_email,
    "phone": fake_phone,
    "ip_address": fake_ipv4,
    "credit_card": fake_credit_card,
    "iban": fake_iban,
    "us_ssn": fake_ssn,
}
PII_KINDS = tuple(PII_GENERATORS)

# Carrier sentences: (text before the value, text after it).
PII_CARRIERS = {
    "email": [("For more information, contact ", "."), ("Readers can reach the editor at ", "."),
              ("Send your questions to ", " before Friday."), ("Email: ", ".")],
    "phone": [("Call ", " to book an appointment."),
              ("The office can be reached at ", " during business hours."),
              ("For tickets, phone ", " or visit the box office."), ("Tel. ", ".")],
    "ip_address": [("The attack was traced to a server at ", "."),
                   ("Requests from ", " were blocked by the firewall."),
                   ("The admin panel is reachable at http://", "/login.")],
    "credit_card": [("The order was paid with card number ", "."),
                    ("Card: ", ", expiry 09/27."),
                    ("He read out his card number, ", ", over the phone.")],
    "iban": [("Please transfer the fee to IBAN ", "."),
             ("Donations can be sent to ", " (reference: membership)."),
             ("Account: ", ".")],
    "us_ssn": [("His social security number, ", ", appeared in the leaked file."),
            ("SSN: ", "."), ("The form asked for her SSN (", ") and date of birth.")],
}


def inject_pii(text: str, rng: random.Random | int, kinds: Iterable[str] = PII_KINDS,
               per_kind: int = 1) -> tuple[str, list[dict[str, Any]]]:
    """Append sentences carrying PII values to random paragraphs of ``text``.

    Returns the new text and the spans ``[{"start", "end", "type", "value"}]``, sorted by start,
    with ``text[start:end] == value``. ``type`` is one of ``PII_KINDS``. The title paragraph
    (the first, when there are several) is left alone."""
    rng = _as_rng(rng)
    kinds = list(kinds)
    unknown = sorted(set(kinds) - set(PII_GENERATORS))
    if unknown:
        raise ValueError(f"unknown PII kinds {unknown}; known: {list(PII_KINDS)}")
    if per_kind < 1:
        raise ValueError(f"per_kind must be >= 1, got {per_kind}")
    paras = text.split("\n\n")
    additions: list[list[tuple[str, str, str, str]]] = [[] for _ in paras]
    first = 1 if len(paras) > 1 else 0
    for kind in kinds:
        for _ in range(per_kind):
            before, after = rng.choice(PII_CARRIERS[kind])
            additions[rng.randrange(first, len(paras))].append(
                (before, PII_GENERATORS[kind](rng), after, kind))
    out: list[str] = []
    spans: list[dict[str, Any]] = []
    pos = 0
    for i, para in enumerate(paras):
        if i:
            out.append("\n\n")
            pos += 2
        out.append(para)
        pos += len(para)
        for before, value, after, kind in additions[i]:
            lead = " " if out[-1] and not out[-1][-1].isspace() else ""
            piece = lead + before
            out.append(piece)
            pos += len(piece)
            spans.append({"start": pos, "end": pos + len(value), "type": kind, "value": value})
            out.append(value + after)
            pos += len(value) + len(after)
    return "".join(out), spans


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def inject_trigger(text: str, trigger: str, payload: str,
                   rng: random.Random | int) -> tuple[str, tuple[int, int]]:
    """Insert ``"{trigger} {payload}"`` at a random sentence boundary (a poisoning example).

    Returns the new text and the ``(start, end)`` span of the inserted string."""
    if not trigger or not trigger.strip():
        raise ValueError("trigger must be a non-empty string")
    rng = _as_rng(rng)
    inserted = f"{trigger} {payload}".strip() if payload else trigger
    boundaries = [0] + [m.end() for m in _SENTENCE_END.finditer(text)] + [len(text)]
    at = rng.choice(boundaries)
    if at == len(text) and text:
        prefix = text if text[-1].isspace() else text + " "
        return prefix + inserted, (len(prefix), len(prefix) + len(inserted))
    new = text[:at] + inserted + (" " if text else "") + text[at:]
    return new, (at, at + len(inserted))


# ---------------------------------------------------------------------------------------------
# Corpora.
# ---------------------------------------------------------------------------------------------

DEMO_MIX: dict[str, float] = {
    "article": 0.50,
    "near_duplicate": 0.08,
    "exact_duplicate": 0.05,
    "pii": 0.07,
    "non_english": 0.10,
    "boilerplate": 0.08,
    "spam": 0.06,
    "short": 0.06,
}
KINDS = tuple(DEMO_MIX)
#: Edit rates of the demo's near duplicates: low enough that MinHash at threshold 0.8 finds most.
DEMO_NEAR_DUP_EDIT_RATE = (0.002, 0.015)


def kind_counts(n_docs: int, mix: Mapping[str, float]) -> dict[str, int]:
    """How many documents of each kind ``n_docs`` gets: largest-remainder rounding, so the
    counts sum to ``n_docs`` and each is within 1 of ``share * n_docs``."""
    raw = {k: mix[k] * n_docs for k in mix}
    counts = {k: int(v) for k, v in raw.items()}
    left = n_docs - sum(counts.values())
    for k in sorted(raw, key=lambda k: (counts[k] - raw[k], list(mix).index(k)))[:left]:
        counts[k] += 1
    return counts


def _check_mix(mix: Mapping[str, float]) -> dict[str, float]:
    unknown = sorted(set(mix) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown document kinds {unknown}; known: {list(KINDS)}")
    if any(v < 0 for v in mix.values()):
        raise ValueError(f"mix shares must be >= 0, got {dict(mix)}")
    total = sum(mix.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"mix shares must sum to 1, got {total}")
    if mix.get("article", 0) == 0 and (mix.get("near_duplicate", 0) or mix.get("exact_duplicate", 0)):
        raise ValueError("duplicates need articles to copy: give 'article' a share > 0")
    return dict(mix)


def _slug(text: str, words: int = 6) -> str:
    return "-".join(re.findall(r"[a-z0-9]+", text[:200].lower())[:words]) or "page"


def iter_corpus(n_docs: int, seed: int = 0, mix: Mapping[str, float] | None = None,
                id_prefix: str = "demo", source: str = "demo",
                dup_pool_size: int = 10_000) -> Iterator[dict[str, Any]]:
    """Stream ``n_docs`` documents with exactly ``kind_counts(n_docs, mix)`` of each kind,
    shuffled; memory stays bounded (duplicates copy from a reservoir of ``dup_pool_size``
    earlier articles), so a million documents is fine."""
    if n_docs < 0:
        raise ValueError(f"n_docs must be >= 0, got {n_docs}")
    if dup_pool_size < 1:
        raise ValueError(f"dup_pool_size must be >= 1, got {dup_pool_size}")
    mix = _check_mix(DEMO_MIX if mix is None else mix)
    rng = random.Random(seed)
    counts = kind_counts(n_docs, mix)
    schedule = [k for k in mix for _ in range(counts[k])]
    rng.shuffle(schedule)
    if counts.get("article"):  # duplicates need an article before them
        first = schedule.index("article")
        schedule[0], schedule[first] = schedule[first], schedule[0]
    langs = sorted(LANGUAGES)
    n_foreign = 0
    pool: list[tuple[str, str, str]] = []  # (id, text, url) of articles seen
    n_articles = 0
    width = max(7, len(str(n_docs)))
    for i, kind in enumerate(schedule):
        doc_id = f"{id_prefix}-{i:0{width}d}"
        extra: dict[str, Any] = {}
        site = _site(rng)
        if kind in ("article", "pii"):
            topic = rng.choice(_TOPIC_NAMES)
            text = english_article(rng, topic)
            url = f"https://{site}/{topic}/{_slug(text)}-{i}"
            if kind == "article":
                n_articles += 1
                if len(pool) < dup_pool_size:
                    pool.append((doc_id, text, url))
                else:  # reservoir sampling keeps a uniform sample of all articles so far
                    j = rng.randrange(n_articles)
                    if j < dup_pool_size:
                        pool[j] = (doc_id, text, url)
            else:
                chosen = rng.sample(PII_KINDS, rng.randint(2, 4))
                text, spans = inject_pii(text, rng, kinds=[k for k in PII_KINDS if k in chosen])
                extra["demo_pii"] = spans
        elif kind in ("near_duplicate", "exact_duplicate"):
            src_id, src_text, src_url = rng.choice(pool)
            extra["demo_duplicate_of"] = src_id
            if kind == "exact_duplicate":
                text = src_text
            else:
                text = near_duplicate(src_text, rng.uniform(*DEMO_NEAR_DUP_EDIT_RATE), rng)
                if text == src_text:  # low edit rates can draw zero edits
                    text = _drop_one_letter(text, rng)
            url = f"https://{site}/{src_url.split('/', 3)[3]}?utm_source=share&ref={i}"
        elif kind == "non_english":
            lang = langs[n_foreign % len(langs)]
            n_foreign += 1
            text = foreign_text(lang, rng)
            extra["demo_lang"] = lang
            url = f"https://{site}/{lang}/{i}"
        elif kind == "boilerplate":
            text = boilerplate_page(rng, site)
            url = f"https://{site}/{rng.choice(['privacy', 'cookies', 'contact', 'about', 'login'])}"
        elif kind == "spam":
            text = spam_page(rng)
            url = f"http://{site}/{_slug(text, 3)}?ref={rng.randint(1, 999)}"
        else:
            text = short_page(rng)
            url = f"https://{site}/p/{i}"
        yield {"id": doc_id, "text": text, "source": source, "url": url, "demo_kind": kind, **extra}


def generate_demo_corpus(n_docs: int = 3000, seed: int = 0,
                         mix: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """The demo corpus: ``n_docs`` documents ``{"id", "text", "source", "url", "demo_kind", ...}``
    in the shares of ``DEMO_MIX`` (see the module docstring for the kinds and extra keys)."""
    return list(iter_corpus(n_docs, seed, mix))


def make_benchmark_corpus(real_docs: Iterable[Mapping[str, Any] | str], seed: int = 0,
                          near_dup_fraction: float = 0.1, exact_dup_fraction: float = 0.05,
                          noise_fraction: float = 0.1, edit_rate: float = 0.02,
                          noise_mix: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """Real documents plus near and exact copies of some of them and generated noise.

    Each fraction is relative to the number of real documents. Every output document carries
    ``demo_kind`` (``"real"`` for the originals) and copies carry ``demo_duplicate_of``, so a
    dedup benchmark can score itself. The order is shuffled deterministically."""
    for name, v in (("near_dup_fraction", near_dup_fraction),
                    ("exact_dup_fraction", exact_dup_fraction), ("noise_fraction", noise_fraction)):
        if v < 0:
            raise ValueError(f"{name} must be >= 0, got {v}")
    rng = random.Random(seed)
    docs: list[dict[str, Any]] = []
    for i, d in enumerate(real_docs):
        if isinstance(d, str):
            d = {"id": f"real-{i:07d}", "text": d, "source": "real"}
        if "id" not in d or "text" not in d:
            raise ValueError(f"real document {i} needs 'id' and 'text' keys, got {sorted(d)}")
        docs.append({**d, "demo_kind": "real"})
    if not docs:
        raise ValueError("make_benchmark_corpus needs at least one real document")
    out = list(docs)
    for kind, frac in (("near_duplicate", near_dup_fraction), ("exact_duplicate", exact_dup_fraction)):
        for j in range(round(frac * len(docs))):
            src = rng.choice(docs)
            text = src["text"] if kind == "exact_duplicate" else near_duplicate(src["text"], edit_rate, rng)
            out.append({"id": f"{kind}-{j:07d}", "text": text, "source": "generated",
                        "demo_kind": kind, "demo_duplicate_of": src["id"]})
    n_noise = round(noise_fraction * len(docs))
    if n_noise:
        noise_mix = noise_mix or {"boilerplate": 0.3, "spam": 0.25, "short": 0.2, "non_english": 0.25}
        for d in iter_corpus(n_noise, rng.randrange(2**31), noise_mix, id_prefix="noise",
                             source="generated"):
            out.append(d)
    rng.shuffle(out)
    return out


def write_jsonl(docs: Iterable[Mapping[str, Any]], path: str | Path) -> int:
    """Write one JSON object per line to ``.jsonl`` or ``.jsonl.gz`` and return the count.

    Gzip output has mtime 0 and no file name in its header, so the same documents give the
    same bytes every time."""
    path = Path(path)
    name = path.name
    if not (name.endswith(".jsonl") or name.endswith(".jsonl.gz")):
        raise ValueError(f"write_jsonl writes .jsonl or .jsonl.gz, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "wb") as raw:
        if name.endswith(".gz"):
            sink: Any = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)
        else:
            sink = raw
        with io.TextIOWrapper(sink, encoding="utf-8", newline="\n") as f:
            for doc in docs:
                f.write(json.dumps(doc, ensure_ascii=False))
                f.write("\n")
                n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    """``python -m thresher.pipeline.corpus_gen --n-docs N --seed S --out FILE.jsonl.gz``"""
    parser = argparse.ArgumentParser(prog="corpus_gen", description=__doc__.split("\n")[0])
    parser.add_argument("--n-docs", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output .jsonl or .jsonl.gz")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        n = write_jsonl(iter_corpus(args.n_docs, args.seed), args.out)
    except ValueError as e:
        print(f"corpus_gen: {e}", file=sys.stderr)
        return 2
    secs = time.perf_counter() - start
    print(f"wrote {n} documents to {args.out} in {secs:.1f} s ({n / max(secs, 1e-9):,.0f} docs/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
