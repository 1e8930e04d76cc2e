"""The built-in corpus: subject-verb agreement across a variable distance (Linzen et al. 2016).

Sentences come from a small probabilistic grammar that is *unambiguous*: every string has one
derivation, so its probability is the product of the choices made while generating it, and the
corpus knows its own entropy floor. The grammar (``k`` ~ uniform{0..max_chunks}):

    S        -> NP_subj NEST_n CHUNK^k VP <eos>       n ~ uniform{0..nesting} (0: no NEST)
    NEST_n   -> (whom NP_i)_{i=1..n} VERB_t[NP_n] .. VERB_t[NP_1]
                                                   center-embedded object relatives
    NP       -> the (ADJ)? NOUN                    number sg/pl, 1/2 each
    CHUNK    -> PREP NP                            a prepositional phrase       (p_pp)
              | that NP VERB_t[agrees with NP]     an object relative clause   (p_orc)
              | that VERB_t[agrees with head] NP   a subject relative clause   (p_src)
    VP       -> VERB_t[agrees with subject] NP  |  VERB_i[agrees with subject]

Nouns inside chunks take no modifiers, adjectives, nouns, verbs and prepositions are disjoint
word sets, a chunk's first two words tell its kind, and only a nest uses ``whom``: hence one
parse per string. A nest of depth n ("the dog whom the cats whom the boy sees chase likes
...") closes its relatives in the reverse order it opened them, so predicting its verbs needs a
stack of n numbers, and the main verb the subject's number from below that stack. The nouns
inside chunks are "attractors": their number is random, so only the subject predicts the main
verb's inflection. The distance of an agreement event is the main verb's position minus the
subject noun's (1 when adjacent); each chunk adds 3-5 words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from seqlm.errors import SeqlmError

# (singular, plural) pairs.
NOUNS = [
    ("dog", "dogs"), ("cat", "cats"), ("boy", "boys"), ("girl", "girls"),
    ("teacher", "teachers"), ("student", "students"), ("child", "children"), ("man", "men"),
    ("woman", "women"), ("doctor", "doctors"), ("farmer", "farmers"), ("king", "kings"),
    ("queen", "queens"), ("pilot", "pilots"), ("author", "authors"), ("senator", "senators"),
    ("lawyer", "lawyers"), ("friend", "friends"), ("neighbor", "neighbors"),
    ("singer", "singers"), ("painter", "painters"), ("driver", "drivers"), ("baker", "bakers"),
    ("soldier", "soldiers"), ("nurse", "nurses"), ("officer", "officers"),
    ("manager", "managers"), ("guest", "guests"), ("player", "players"), ("mouse", "mice"),
    ("wolf", "wolves"), ("thief", "thieves"), ("goose", "geese"), ("judge", "judges"),
    ("poet", "poets"), ("chef", "chefs"), ("farmhand", "farmhands"), ("clerk", "clerks"),
    ("actor", "actors"), ("dancer", "dancers"),
]  # fmt: skip
# (3rd person singular, plural) pairs.
VERBS_T = [
    ("sees", "see"), ("likes", "like"), ("knows", "know"), ("helps", "help"),
    ("admires", "admire"), ("follows", "follow"), ("meets", "meet"), ("calls", "call"),
    ("watches", "watch"), ("finds", "find"), ("loves", "love"), ("hates", "hate"),
    ("trusts", "trust"), ("visits", "visit"), ("thanks", "thank"), ("avoids", "avoid"),
    ("chases", "chase"), ("remembers", "remember"), ("praises", "praise"), ("blames", "blame"),
    ("greets", "greet"), ("teaches", "teach"), ("pays", "pay"), ("ignores", "ignore"),
]  # fmt: skip
VERBS_I = [
    ("sleeps", "sleep"), ("smiles", "smile"), ("laughs", "laugh"), ("runs", "run"),
    ("waits", "wait"), ("sings", "sing"), ("arrives", "arrive"), ("leaves", "leave"),
    ("swims", "swim"), ("talks", "talk"), ("works", "work"), ("cries", "cry"),
]  # fmt: skip
ADJECTIVES = [
    "old", "young", "tall", "small", "happy", "quiet", "clever", "angry", "famous", "tired",
    "rich", "poor", "brave", "kind", "busy", "strange", "proud", "honest", "lazy", "calm",
]  # fmt: skip
PREPOSITIONS = ["near", "behind", "beside", "with", "without", "above", "below", "under"]


@dataclass(frozen=True)
class Grammar:
    """The choice probabilities; ``max_chunks`` sets the spread of subject-verb distances."""

    max_chunks: int = 3
    """Chunks between subject and verb are uniform on 0..max_chunks (3 -> distances 1-16;
    12 -> up to 61)."""
    nesting: int = 0
    """The depth of the center-embedded relatives after the subject is uniform on
    0..nesting (0: none, the original grammar)."""
    p_adj: float = 0.3
    """Probability that a noun phrase has an adjective."""
    p_pp: float = 0.4
    """Probability that a chunk is a prepositional phrase."""
    p_orc: float = 0.3
    """Probability that a chunk is an object relative clause (the rest: subject relative)."""
    p_transitive: float = 0.6
    """Probability that the main verb is transitive (takes an object)."""

    def __post_init__(self):
        if self.max_chunks < 0:
            raise SeqlmError(f"data.max_chunks={self.max_chunks} must be >= 0")
        if not isinstance(self.nesting, int) or self.nesting < 0:
            raise SeqlmError(f"data.nesting={self.nesting!r} must be an integer >= 0")
        for name in ("p_adj", "p_pp", "p_orc", "p_transitive"):
            p = getattr(self, name)
            if not 0.0 < p < 1.0:
                raise SeqlmError(f"data.{name}={p} must be strictly between 0 and 1")
        if self.p_pp + self.p_orc >= 1.0:
            raise SeqlmError(f"data.p_pp + data.p_orc = {self.p_pp + self.p_orc} must be < 1")


@dataclass
class Sentence:
    words: list[str]
    logprob: float
    """Natural log of the sentence's probability under the grammar, its <eos> included."""
    verb_index: int
    """Position of the main verb in ``words``."""
    distance: int
    """Main verb's position minus the subject noun's."""
    wrong_verb: str
    """The main verb with the other inflection."""


def _sample_sentence(g: Grammar, rng: np.random.Generator) -> Sentence:
    words: list[str] = []
    lp = 0.0

    def choose(n: int) -> int:
        nonlocal lp
        lp -= math.log(n)
        return int(rng.integers(n))

    def coin(p: float) -> bool:
        nonlocal lp
        hit = bool(rng.random() < p)
        lp += math.log(p if hit else 1.0 - p)
        return hit

    def noun_phrase() -> int:
        """Appends `the (ADJ)? NOUN`; returns the number (0 sg, 1 pl)."""
        words.append("the")
        if coin(g.p_adj):
            words.append(ADJECTIVES[choose(len(ADJECTIVES))])
        number = choose(2)
        words.append(NOUNS[choose(len(NOUNS))][number])
        return number

    subject = noun_phrase()
    subject_index = len(words) - 1
    if g.nesting:
        stack = []  # the numbers of the open relatives' nouns
        for _ in range(choose(g.nesting + 1)):
            words.append("whom")
            stack.append(noun_phrase())
        while stack:  # each relative's verb agrees with its own noun, innermost first
            words.append(VERBS_T[choose(len(VERBS_T))][stack.pop()])
    for _ in range(choose(g.max_chunks + 1)):
        u = rng.random()
        if u < g.p_pp:
            lp += math.log(g.p_pp)
            words.append(PREPOSITIONS[choose(len(PREPOSITIONS))])
            noun_phrase()
        elif u < g.p_pp + g.p_orc:
            lp += math.log(g.p_orc)
            words.append("that")
            inner = noun_phrase()
            words.append(VERBS_T[choose(len(VERBS_T))][inner])
        else:
            lp += math.log(1.0 - g.p_pp - g.p_orc)
            words.append("that")
            words.append(VERBS_T[choose(len(VERBS_T))][subject])
            noun_phrase()
    verb_index = len(words)
    if coin(g.p_transitive):
        pair = VERBS_T[choose(len(VERBS_T))]
        words.append(pair[subject])
        noun_phrase()
    else:
        pair = VERBS_I[choose(len(VERBS_I))]
        words.append(pair[subject])
    return Sentence(words, lp, verb_index, verb_index - subject_index, pair[1 - subject])


def generate(g: Grammar, n_tokens: int, seed: int) -> list[Sentence]:
    """Sentences until they hold at least ``n_tokens`` tokens (``<eos>`` counted)."""
    rng = np.random.default_rng(seed)
    out: list[Sentence] = []
    total = 0
    while total < n_tokens:
        s = _sample_sentence(g, rng)
        out.append(s)
        total += len(s.words) + 1
    return out


def vocabulary_words() -> set[str]:
    """Every word the grammar can produce."""
    words = {"the", "that", "whom", *ADJECTIVES, *PREPOSITIONS}
    for pairs in (NOUNS, VERBS_T, VERBS_I):
        for a, b in pairs:
            words.update((a, b))
    return words
