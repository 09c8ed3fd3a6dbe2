"""The demo corpus generator's vocabulary: English topics and sentence templates, five other
languages, boilerplate, spam and PII name lists. Data only; ``corpus.py`` builds text from it."""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------
# English vocabulary: shared words plus one block per topic, and sentence templates.
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


# ---------------------------------------------------------------------------------------------
# Other languages: (subjects, objects, times, places, adjectives, templates, joiner) per language,
# enough for cld3 to be sure.
# ---------------------------------------------------------------------------------------------

LANGUAGE_WORDS: dict[str, tuple] = {
    "de": (
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
    "fr": (
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
    "es": (
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
    "ru": (
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
    "zh": (
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
        ], ""),
}


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

SHORT_TEXTS = ["", " ", "\n", "Loading...", "404 Not Found", "Page not found", "Coming soon!",
               "Thanks for reading.", "Click here", "Error 503 Service Unavailable",
               "Under construction", "Redirecting...", "Access denied", "OK"]


# ---------------------------------------------------------------------------------------------
# Names and domains for generated PII.
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
