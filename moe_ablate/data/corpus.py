"""The built-in corpus: deterministic, English-like text that needs no network.

Hand-written because no installed package ships a licence-clean English corpus of this size, and
the default run must work offline. The text is generated from a seed, document by document, and
has structure a small model can learn at several levels:

- words: a fixed vocabulary, so BPE learns real sub-word units;
- syntax: sentence templates with subject-verb agreement (singular/plural) and fixed word order;
- topic: each document draws its nouns, verbs and places mostly from one topic's word lists;
- long range: a document introduces characters and an object early and refers back to them
  (pronouns that agree with the name, the object recalled in the closing sentence);
- arithmetic and counting: short number facts that are right, so they can be predicted.

Document i depends only on (seed, i), so any prefix of the corpus is reproducible and the
corpus is effectively unbounded (about 230 tokens a document with the default BPE).
"""

from __future__ import annotations

import random

TOPICS: dict[str, dict[str, list[str]]] = {
    "farm": {
        "nouns": ["cow", "horse", "barn", "field", "tractor", "fence", "goat", "farmer", "seed", "harvest"],
        "verbs": ["feed", "plant", "carry", "water", "gather", "clean"],
        "places": ["the farm", "the valley", "the meadow", "the orchard"],
        "adjs": ["muddy", "green", "quiet", "early"],
    },
    "sea": {
        "nouns": ["boat", "sailor", "wave", "harbor", "net", "fish", "island", "captain", "storm", "shell"],
        "verbs": ["sail", "row", "catch", "watch", "follow", "pull"],
        "places": ["the harbor", "the coast", "the open sea", "the bay"],
        "adjs": ["salty", "blue", "windy", "deep"],
    },
    "city": {
        "nouns": ["train", "street", "market", "tower", "bridge", "driver", "shop", "crowd", "lamp", "ticket"],
        "verbs": ["visit", "build", "cross", "sell", "paint", "open"],
        "places": ["the city", "the station", "the square", "the old town"],
        "adjs": ["busy", "bright", "narrow", "tall"],
    },
    "forest": {
        "nouns": ["tree", "fox", "river", "path", "owl", "cabin", "stone", "hunter", "leaf", "wolf"],
        "verbs": ["climb", "find", "hide", "track", "cut", "follow"],
        "places": ["the forest", "the hills", "the clearing", "the old wood"],
        "adjs": ["dark", "tall", "silent", "wild"],
    },
    "school": {
        "nouns": ["teacher", "book", "lesson", "student", "desk", "letter", "map", "garden", "bell", "song"],
        "verbs": ["read", "write", "learn", "explain", "draw", "study"],
        "places": ["the school", "the library", "the classroom", "the hall"],
        "adjs": ["careful", "new", "long", "simple"],
    },
    "kitchen": {
        "nouns": ["bread", "soup", "knife", "oven", "cook", "apple", "plate", "spoon", "onion", "cake"],
        "verbs": ["bake", "cut", "taste", "mix", "serve", "wash"],
        "places": ["the kitchen", "the bakery", "the inn", "the cellar"],
        "adjs": ["warm", "sweet", "fresh", "heavy"],
    },
}
COMMON_ADJS = ["small", "large", "old", "young", "happy", "tired", "strong", "little"]
ADVERBS = ["slowly", "quickly", "carefully", "often", "quietly", "again", "early", "happily"]
NAMES = {
    "she": ["Anna", "Maria", "Lucy", "Emma", "Sofia", "Clara", "Nina", "Rosa"],
    "he": ["Tom", "Jack", "Peter", "Leo", "Omar", "Hugo", "Sam", "Felix"],
}
TIMES = ["In the morning", "At noon", "In the evening", "Later that day", "The next day", "At night"]
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                "eleven", "twelve"]
ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth"]


def _plural(noun: str) -> str:
    if noun.endswith(("s", "sh", "ch", "x")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    if noun == "wolf":
        return "wolves"
    if noun == "knife":
        return "knives"
    if noun == "leaf":
        return "leaves"
    if noun == "fish":
        return "fish"
    return noun + "s"


def _third(verb: str) -> str:
    if verb.endswith(("s", "sh", "ch", "x", "o")):
        return verb + "es"
    if verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def _past(verb: str) -> str:
    irregular = {"catch": "caught", "find": "found", "hide": "hid", "cut": "cut", "read": "read",
                 "write": "wrote", "draw": "drew", "build": "built", "sell": "sold", "learn": "learned"}
    if verb in irregular:
        return irregular[verb]
    if verb.endswith("e"):
        return verb + "d"
    if verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ied"
    return verb + "ed"


class _Doc:
    """State of one document: topic, characters, the object the story is about."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.topic_name = rng.choice(list(TOPICS))
        self.topic = TOPICS[self.topic_name]
        pron = rng.choice(["she", "he"])
        self.hero = (rng.choice(NAMES[pron]), pron)
        other = "he" if pron == "she" else "she"
        self.friend = (rng.choice(NAMES[other]), other)
        self.item = rng.choice(self.topic["nouns"])
        self.item_adj = rng.choice(self.topic["adjs"] + COMMON_ADJS)

    def noun(self) -> str:
        r = self.rng
        if r.random() < 0.85:
            return r.choice(self.topic["nouns"])
        return r.choice(TOPICS[r.choice(list(TOPICS))]["nouns"])

    def verb(self) -> str:
        return self.rng.choice(self.topic["verbs"])

    def adj(self) -> str:
        r = self.rng
        return r.choice(self.topic["adjs"]) if r.random() < 0.6 else r.choice(COMMON_ADJS)

    def np(self) -> tuple[str, bool]:
        """A noun phrase and whether it is plural."""
        r = self.rng
        n = self.noun()
        if r.random() < 0.4:
            k = r.randint(2, 9)
            return f"{NUMBER_WORDS[k]} {self.adj()} {_plural(n)}", True
        det = r.choice(["the", "a", "the"])
        phrase = f"{det} {self.adj()} {n}" if r.random() < 0.5 else f"{det} {n}"
        if det == "a" and phrase.split()[1][0] in "aeiou":
            phrase = "an" + phrase[1:]
        return phrase, False

    def sentence(self) -> str:
        r = self.rng
        kind = r.random()
        (name, pron), (other, _) = (self.hero, self.friend) if r.random() < 0.7 else (self.friend, self.hero)
        if kind < 0.30:  # subject-verb-object with agreement
            subj, plural = self.np()
            obj, _ = self.np()
            v = self.verb() if plural else _third(self.verb())
            s = f"{subj} {v} {obj} in {r.choice(self.topic['places'])}"
            return s[0].upper() + s[1:] + "."
        if kind < 0.50:  # a character acts; pronoun agrees with the name
            obj, _ = self.np()
            return (f"{r.choice(TIMES)}, {name} went to {r.choice(self.topic['places'])}. "
                    f"There {pron} {_past(self.verb())} {obj} {r.choice(ADVERBS)}.")
        if kind < 0.62:  # the document's object comes back
            return f"{name} looked at the {self.item_adj} {self.item} and smiled."
        if kind < 0.72:  # arithmetic that is right
            a, b = r.randint(0, 6), r.randint(0, 6)
            n = self.noun()
            return (f"{name} had {NUMBER_WORDS[a]} {_plural(n) if a != 1 else n}, and {other} "
                    f"gave {pron == 'she' and 'her' or 'him'} {NUMBER_WORDS[b]} more, "
                    f"so now {pron} has {NUMBER_WORDS[a + b]}.")
        if kind < 0.80:  # counting sequence
            k = r.randint(2, 5)
            steps = [f"{ORDINALS[i]}, {pron} {_past(self.verb())} the {self.noun()}" for i in range(k)]
            return "; ".join(steps).capitalize() + "."
        if kind < 0.90:  # plural subject, plural verb
            n = self.noun()
            return f"The {_plural(n)} in {r.choice(self.topic['places'])} are {self.adj()} and {self.adj()}."
        a_name, a_pron = self.friend
        return f'"I will {self.verb()} the {self.noun()} {r.choice(ADVERBS)}," said {a_name}.'

    def text(self) -> str:
        r = self.rng
        hero, pron = self.hero
        lines = [f"A story about {self.topic_name}.",
                 f"{hero} lived near {r.choice(self.topic['places'])} and kept a {self.item_adj} {self.item}."]
        for _ in range(r.randint(8, 18)):
            lines.append(self.sentence())
        lines.append(f"In the end, {hero} still had the {self.item_adj} {self.item}, and {pron} was happy.")
        return " ".join(lines)


def builtin_document(seed: int, index: int) -> str:
    return _Doc(random.Random(seed * 1_000_003 + index)).text()


def builtin_documents(seed: int, count: int) -> list[str]:
    return [builtin_document(seed, i) for i in range(count)]
