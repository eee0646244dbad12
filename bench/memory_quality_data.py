"""The labelled set of bench/memory_quality.py: an agent's memories and queries with answers.

``MEMORIES``: hand-written facts an agent would keep (leads, people, preferences, events,
skills, patterns), each with a key. ``FILLER``: look-alike memories generated from templates
(other leads of the same companies, the same roles at other companies, other budgets and dates)
so that sharing words with a query is not enough to be its answer. ``QUERIES``: (kind, text,
keys of the memories that answer it). Kinds:

* ``lexical``: the query repeats words of its answer;
* ``paraphrase``: the query says it in other words (no content word shared, or only a name);
* ``distractor``: the query shares words with look-alikes that do not answer it;
* ``unrelated``: nothing stored answers it (what passes the similarity floor is noise).
"""

from __future__ import annotations

import itertools
import random

MEMORIES: dict[str, tuple[str, str]] = {
    # --- people and preferences
    "alex_veg": ("preference", "Alex is vegetarian and never orders the steak at team dinners"),
    "alex_role": ("fact", "Alex Chen leads the data platform team"),
    "alex_coffee": ("preference", "Alex drinks oat milk flat whites"),
    "priya_email": ("preference", "Priya Natarajan prefers to be contacted by email, not phone"),
    "priya_tz": ("fact", "Priya works from Bangalore, five and a half hours ahead of UTC"),
    "tom_kids": ("fact", "Tom Becker has two daughters and leaves at 4 pm on Fridays"),
    "tom_cycle": ("preference", "Tom Becker cycles to the office every day"),
    "lena_lang": ("fact", "Lena Hoffmann speaks German, French and Italian"),
    "lena_allergy": ("fact", "Lena Hoffmann is allergic to peanuts"),
    "sam_meetings": ("preference", "Sam O'Neill dislikes meetings before 10 am"),
    "sam_slack": ("preference", "Sam O'Neill answers faster on Slack than by email"),
    "user_short": ("preference", "The user wants short answers with bullet points"),
    "user_metric": ("preference", "The user wants distances in kilometres and temperatures in Celsius"),
    "user_python": ("preference", "The user writes code in Python and prefers type hints"),
    "user_no_emoji": ("preference", "The user asked never to use emoji in reports"),
    "user_name": ("fact", "The user's name is Jordan Reyes"),
    "user_role": ("fact", "Jordan Reyes is head of sales operations at Northwind"),
    "user_manager": ("fact", "Jordan reports to the chief revenue officer, Dana Whitfield"),
    "dana_style": ("preference", "Dana Whitfield wants a one-page summary before any long document"),
    "mia_travel": ("fact", "Mia Rossi is travelling in Japan until the end of the month"),
    "mia_hobby": ("fact", "Mia Rossi plays the cello in an amateur orchestra"),
    "raj_night": ("fact", "Raj Patel works night shifts at the support desk"),
    "raj_cert": ("skill", "Raj Patel is a certified Kubernetes administrator"),
    "kim_left": ("event", "Kim Novak left Northwind in April to join a competitor"),
    "kim_phone": ("fact", "Kim Novak's new mobile number ends in 4471"),
    # --- leads and accounts
    "acme_budget": ("fact", "Acme Corp has a budget of 50,000 dollars for the pilot"),
    "acme_cto": ("fact", "John Smith is the CTO of Acme Corp"),
    "acme_ceo": ("fact", "Acme Corp's chief executive is Laura Kim"),
    "acme_hq": ("fact", "Acme Corp's headquarters are in Berlin"),
    "acme_score": ("fact", "The lead John Smith at Acme Corp is hot, score 75"),
    "acme_security": ("fact", "Acme Corp needs SOC 2 compliance before signing"),
    "acme_timeline": ("fact", "Acme Corp wants to go live before the third quarter"),
    "globex_discount": ("fact", "Globex asked for a 15 percent discount on the enterprise plan"),
    "globex_size": ("fact", "Globex has about 1,200 employees in four countries"),
    "globex_champion": ("fact", "Our champion at Globex is the head of finance, Omar Haddad"),
    "globex_rival": ("fact", "Globex currently uses a competitor's product and its contract ends in June"),
    "initech_churn": ("event", "Initech cancelled its subscription in February citing cost"),
    "initech_reason": ("fact", "Initech found our reporting module too slow for their data volume"),
    "umbrella_trial": ("event", "Umbrella Health started a 30-day trial on March 3"),
    "umbrella_hipaa": ("fact", "Umbrella Health must keep patient data in the United States"),
    "stark_expand": ("event", "Stark Industries added 300 seats in the last renewal"),
    "stark_invoice": ("preference", "Stark Industries wants invoices quarterly, paid by bank transfer"),
    "wayne_legal": ("fact", "Wayne Enterprises' legal team takes about six weeks to review a contract"),
    "wayne_contact": ("fact", "Bruce Tan handles procurement at Wayne Enterprises"),
    "hooli_pilot": ("event", "The Hooli pilot ended without a decision because their sponsor went on leave"),
    "hooli_sponsor": ("fact", "Hooli's executive sponsor is Gavin Brooks"),
    "soylent_food": ("fact", "Soylent Foods distributes groceries across the Midwest"),
    "soylent_gdpr": ("fact", "Soylent Foods has no customers in Europe"),
    "vandelay_import": ("fact", "Vandelay Industries imports latex from Malaysia"),
    "vandelay_pay": ("fact", "Vandelay Industries pays its invoices sixty days late on average"),
    "pied_tech": ("fact", "Pied Piper built its own compression engine and runs on bare metal"),
    "pied_budget": ("fact", "Pied Piper has no budget approved until its next funding round"),
    "tyrell_ai": ("fact", "Tyrell Corp wants to use the API for customer-service automation"),
    "tyrell_volume": ("fact", "Tyrell Corp expects about two million requests a month"),
    # --- events
    "conf_berlin": ("event", "We met three leads at the SaaS Summit in Berlin in May"),
    "webinar": ("event", "The pricing webinar on June 12 had 240 attendees"),
    "outage": ("event", "The EU region was down for two hours on March 18 because of a bad deploy"),
    "outage_fix": ("event", "After the March outage we added canary deploys for every region"),
    "price_change": ("event", "List prices rose by 8 percent on January 1"),
    "hire_se": ("event", "We hired two sales engineers for the DACH region in March"),
    "offsite": ("event", "The sales offsite is planned for September in Lisbon"),
    "quota": ("fact", "Each account executive has a quarterly quota of 250,000 dollars"),
    "q1_result": ("event", "The team closed 112 percent of its target in the first quarter"),
    "board": ("event", "The board approved expansion into Brazil for next year"),
    # --- skills and patterns
    "skill_sql": ("skill", "To find churned accounts, query subscriptions whose end date is past and have no renewal"),
    "skill_bant": ("skill", "Qualify a lead with BANT: budget, authority, need and timeline"),
    "skill_csv": ("skill", "Export the pipeline report as CSV from the reports tab, not the dashboard"),
    "skill_refund": ("skill", "Refunds over 1,000 dollars need approval from finance"),
    "skill_discount": ("skill", "Discounts above 20 percent must be approved by the CRO"),
    "skill_demo": ("skill", "Book demos through the shared calendar so a sales engineer can join"),
    "pattern_friday": ("pattern", "Deals sent for signature on Fridays are usually signed the next Tuesday"),
    "pattern_cfo": ("pattern", "When the CFO joins a call, the deal usually closes within a month"),
    "pattern_trial": ("pattern", "Trials without a kickoff call in the first week rarely convert"),
    "pattern_rfp": ("pattern", "Public-sector leads almost always require a formal tender"),
    "pattern_security": ("pattern", "Security reviews add three to five weeks to enterprise deals"),
    # --- product facts
    "prod_sso": ("fact", "Single sign-on is only available on the enterprise plan"),
    "prod_api_limit": ("fact", "The standard plan allows 100 API requests per minute"),
    "prod_regions": ("fact", "Data can be hosted in the EU, the US or Australia"),
    "prod_uptime": ("fact", "The enterprise plan comes with a 99.9 percent uptime guarantee"),
    "prod_mobile": ("fact", "The mobile app works offline and syncs when back online"),
    "prod_export": ("fact", "Customers can export all their data as JSON at any time"),
    "prod_seats": ("fact", "The starter plan is limited to five seats"),
    # --- office and admin
    "office_wifi": ("fact", "The guest wifi password changes every Monday"),
    "office_parking": ("fact", "Visitors can park in the garage on level minus two"),
    "expense": ("skill", "Expense claims must be filed within thirty days with a receipt"),
    "laptop": ("fact", "New laptops are ordered through the IT portal and take a week"),
    "holiday": ("fact", "The office is closed between Christmas and New Year"),
    # --- hand-written look-alikes: the words of a distractor query, not its answer
    "la_acme_cfo": ("fact", "Acme Corp's chief financial officer is Paul Meyer"),
    "la_acme_exec": ("fact", "The executive assistant at Acme Corp schedules all calls with the board"),
    "la_acme_lead2": ("fact", "The lead Jane Smith at Acme Corp is cold, score 20"),
    "la_acme_golive": ("fact", "Acme Corp went live with the old CRM in 2019"),
    "la_globex_champ": ("fact", "Our champion at Initech left before the renewal"),
    "la_hooli_exec": ("fact", "Hooli's executive team meets every Monday"),
    "la_hooli_decision": ("event", "The Hooli pilot was extended by two weeks in January"),
    "la_outage_march": ("event", "In March we moved the US region to a new data centre"),
    "la_alex_team": ("fact", "Alex Chen's team uses Snowflake and dbt"),
    "la_tyrell_api": ("fact", "Tyrell Corp's API keys were rotated in May"),
    "la_hire_march": ("event", "In March we hired a new office manager"),
    "la_may_leads": ("event", "In May two leads asked for a security review"),
    "la_starter_price": ("fact", "The starter plan costs 29 dollars per seat per month"),
}

# Paraphrase targets: queries whose answers share no content word with them (names aside).
QUERIES: list[tuple[str, str, list[str]]] = [
    # lexical
    ("lexical", "What is the budget of Acme Corp for the pilot?", ["acme_budget"]),
    ("lexical", "Who is the CTO of Acme Corp?", ["acme_cto"]),
    ("lexical", "What discount did Globex ask for on the enterprise plan?", ["globex_discount"]),
    ("lexical", "When did Umbrella Health start its trial?", ["umbrella_trial"]),
    ("lexical", "How many seats did Stark Industries add in the renewal?", ["stark_expand"]),
    ("lexical", "How long does Wayne Enterprises' legal team take to review a contract?", ["wayne_legal"]),
    ("lexical", "Which languages does Lena Hoffmann speak?", ["lena_lang"]),
    ("lexical", "How many attendees did the pricing webinar have?", ["webinar"]),
    ("lexical", "What is the quarterly quota of an account executive?", ["quota"]),
    ("lexical", "Is single sign-on available on the enterprise plan?", ["prod_sso"]),
    ("lexical", "How many API requests per minute does the standard plan allow?", ["prod_api_limit"]),
    ("lexical", "Where is the sales offsite planned?", ["offsite"]),
    ("lexical", "Who handles procurement at Wayne Enterprises?", ["wayne_contact"]),
    ("lexical", "Why did Initech cancel its subscription?", ["initech_churn", "initech_reason"]),
    ("lexical", "How should a lead be qualified with BANT?", ["skill_bant"]),
    ("lexical", "How do I export the pipeline report as CSV?", ["skill_csv"]),
    ("lexical", "Who approves discounts above 20 percent?", ["skill_discount"]),
    # paraphrase
    ("paraphrase", "Does Alex eat meat?", ["alex_veg"]),
    ("paraphrase", "What is the best way to reach Priya?", ["priya_email"]),
    ("paraphrase", "What time zone is Priya in?", ["priya_tz"]),
    ("paraphrase", "Does Tom have children?", ["tom_kids"]),
    ("paraphrase", "How does Tom get to work?", ["tom_cycle"]),
    ("paraphrase", "Can Lena eat satay sauce?", ["lena_allergy"]),
    ("paraphrase", "Can I schedule an early morning call with Sam?", ["sam_meetings"]),
    ("paraphrase", "How long should my replies to the user be?", ["user_short"]),
    ("paraphrase", "Should I give the user miles or Fahrenheit?", ["user_metric"]),
    ("paraphrase", "Which programming language does the user like?", ["user_python"]),
    ("paraphrase", "Can I put smileys in the weekly report?", ["user_no_emoji"]),
    ("paraphrase", "Who is my boss?", ["user_manager"]),
    ("paraphrase", "Is Mia available for an in-person meeting in Paris next week?", ["mia_travel"]),
    ("paraphrase", "Does Mia play a musical instrument?", ["mia_hobby"]),
    ("paraphrase", "Who can help with our container orchestration cluster?", ["raj_cert"]),
    ("paraphrase", "Is Kim still working with us?", ["kim_left"]),
    ("paraphrase", "How much money can Acme spend?", ["acme_budget"]),
    ("paraphrase", "Where is Acme located?", ["acme_hq"]),
    ("paraphrase", "What certification does Acme require from vendors?", ["acme_security"]),
    ("paraphrase", "How big is Globex?", ["globex_size"]),
    ("paraphrase", "When could we replace the incumbent vendor at Globex?", ["globex_rival"]),
    ("paraphrase", "Where must Umbrella store medical records?", ["umbrella_hipaa"]),
    ("paraphrase", "How does Stark like to be billed?", ["stark_invoice"]),
    ("paraphrase", "Does Vandelay settle its bills on time?", ["vandelay_pay"]),
    ("paraphrase", "Can Pied Piper afford us right now?", ["pied_budget"]),
    ("paraphrase", "How much traffic will Tyrell send?", ["tyrell_volume"]),
    ("paraphrase", "Did anything break in production recently?", ["outage"]),
    ("paraphrase", "Did our prices go up this year?", ["price_change"]),
    ("paraphrase", "Did we hit our numbers at the start of the year?", ["q1_result"]),
    ("paraphrase", "Are we going to enter the South American market?", ["board"]),
    ("paraphrase", "Who needs to sign off on giving a customer their money back?", ["skill_refund"]),
    ("paraphrase", "What tends to happen when the finance chief joins a sales call?", ["pattern_cfo"]),
    ("paraphrase", "Do government prospects need a bidding process?", ["pattern_rfp"]),
    ("paraphrase", "How reliable is the top tier?", ["prod_uptime"]),
    ("paraphrase", "Can the phone app be used without an internet connection?", ["prod_mobile"]),
    ("paraphrase", "Where can I leave my car when visiting the office?", ["office_parking"]),
    ("paraphrase", "How do I get reimbursed for a business dinner?", ["expense"]),
    # distractor: look-alikes share the query's words
    ("distractor", "Who is the chief executive of Acme Corp?", ["acme_ceo"]),
    ("distractor", "What is the score of the lead John Smith at Acme Corp?", ["acme_score"]),
    ("distractor", "When does Acme Corp want to go live?", ["acme_timeline"]),
    ("distractor", "Who is our champion at Globex?", ["globex_champion"]),
    ("distractor", "Who is Hooli's executive sponsor?", ["hooli_sponsor"]),
    ("distractor", "Why did the Hooli pilot end without a decision?", ["hooli_pilot"]),
    ("distractor", "What did we change after the March outage?", ["outage_fix"]),
    ("distractor", "Which team does Alex Chen lead?", ["alex_role"]),
    ("distractor", "What does Tyrell Corp want to use the API for?", ["tyrell_ai"]),
    ("distractor", "How many sales engineers did we hire in March?", ["hire_se"]),
    ("distractor", "Where did we meet leads in May?", ["conf_berlin"]),
    ("distractor", "How many seats does the starter plan allow?", ["prod_seats"]),
    # unrelated: nothing stored answers these
    ("unrelated", "What is the capital of Australia?", []),
    ("unrelated", "How do I bake sourdough bread?", []),
    ("unrelated", "Explain quantum entanglement simply", []),
    ("unrelated", "What is the best way to learn the violin as an adult?", []),
    ("unrelated", "Recommend a hiking trail in the Alps", []),
    ("unrelated", "hi", []),
]

# Look-alikes: the same companies, roles, products and months in other facts.
_FIRST = ["Maria", "David", "Sofia", "Lucas", "Emma", "Noah", "Olivia", "Liam", "Ava", "Ethan",
          "Chloe", "Mateo", "Nora", "Felix", "Ines", "Hugo"]
_LAST = ["Garcia", "Miller", "Rossi", "Dubois", "Novak", "Schmidt", "Kowalski", "Silva",
         "Jensen", "Moreau", "Lindqvist", "Okafor"]
_COMPANIES = ["Acme Corp", "Globex", "Initech", "Umbrella Health", "Stark Industries",
              "Wayne Enterprises", "Hooli", "Soylent Foods", "Vandelay Industries", "Pied Piper",
              "Tyrell Corp", "Cyberdyne", "Oscorp", "Massive Dynamic", "Aperture Labs"]
_ROLES = ["CTO", "CFO", "VP of Sales", "head of IT", "procurement manager", "COO",
          "data engineer", "product manager"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October"]
_TEMPLATES = [
    "{name} is the {role} of {company}",
    "{name}, {role} at {company}, asked about the enterprise plan pricing",
    "{company} has a budget of {amount},000 dollars for {thing}",
    "{company} wants to go live with {thing} in {month}",
    "The lead {name} at {company} is {temp}, score {score}",
    "{company} asked for a demo of {thing} in {month}",
    "{name} from {company} prefers calls in the afternoon",
    "{company} renewed its contract for {thing} in {month}",
    "We sent {company} a proposal for {thing} on {month} {day}",
    "{name} at {company} wants a security questionnaire for {thing}",
    "{company} has about {size} employees",
    "{name} joined {company} as {role} in {month}",
]
_THINGS = ["the analytics add-on", "single sign-on", "the mobile app", "the API",
           "the reporting module", "the data warehouse connector", "the EU hosting option",
           "premium support"]


# (words, company) that would make a look-alike a second true answer to a labelled query.
_ANSWERED = [("CTO", "Acme Corp"), ("go live", "Acme Corp"), ("budget", "Acme Corp"),
             ("employees", "Globex"), ("COO", "Acme Corp")]


def filler(n: int = 240, seed: int = 7) -> list[tuple[str, str]]:
    """``n`` look-alike memories (type, text), the same for every run."""
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    names = [f"{a} {b}" for a, b in itertools.product(_FIRST, _LAST)]
    while len(out) < n:
        template = rng.choice(_TEMPLATES)
        text = template.format(
            name=rng.choice(names), role=rng.choice(_ROLES), company=rng.choice(_COMPANIES),
            amount=rng.choice([20, 35, 40, 60, 80, 120, 200]), thing=rng.choice(_THINGS),
            month=rng.choice(_MONTHS), day=rng.randint(1, 28),
            temp=rng.choice(["hot", "warm", "cold"]), score=rng.randint(20, 95),
            size=rng.choice(["80", "450", "2,000", "9,500"]))
        if text in seen or any(a in text and b in text for a, b in _ANSWERED):
            continue
        seen.add(text)
        kind = "preference" if "prefers" in text else ("event" if any(
            w in text for w in ("renewed", "sent", "joined")) else "fact")
        out.append((kind, text))
    return out
