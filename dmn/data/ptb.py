"""Penn Treebank conventions, shared by the sentiment (SST) and tagging (WSJ) readers: bracketed trees, and
the Treebank word tokenisation that turns a user's plain text into the tokens those trees hold.

Trees are read on ASCII whitespace only, so a token holding another space character (SST has one with a
no-break space, U+00A0) stays one token, as its README asks; tokens keep every Unicode letter.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dmn import storage
from dmn.errors import ConfigError, DataError

TREE_TOKEN = re.compile(r"\(|\)|[^() \t\n\r\f\v]+")
BRACKETS = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-"}


@dataclass(frozen=True)
class Tree:
    """A bracketed tree: a leaf `(label word)` has a word and no children; the outer `( ... )` of a WSJ
    .mrg tree has the label ''."""

    label: str
    children: tuple[Tree, ...] = ()
    word: str | None = None

    def leaves(self) -> list[Tree]:
        """The (label word) nodes, left to right."""
        if self.word is not None:
            return [self]
        return [leaf for child in self.children for leaf in child.leaves()]

    def subtrees(self) -> Iterator[Tree]:
        """Every node, this one first."""
        yield self
        for child in self.children:
            yield from child.subtrees()


def read_trees(path: str | Path) -> list[tuple[int, Tree]]:
    """Every tree of a file (one per line, as SST, or spread over lines, as WSJ .mrg) with the line where it
    starts; DataError naming the file and line of an unbalanced bracket, a word outside brackets or an
    empty node."""
    trees: list[tuple[int, Tree]] = []
    stack: list[tuple[int, list]] = []  # (line of its '(', [label, children...]) of the open nodes
    with storage.open_text(path) as lines:
        for number, line in enumerate(lines, start=1):
            for token in TREE_TOKEN.findall(line):
                if token == "(":
                    stack.append((number, []))
                elif token == ")":
                    if not stack:
                        raise DataError(path, "unbalanced brackets: ')' closes nothing", number)
                    start, parts = stack.pop()
                    node = _node(parts, path, number)
                    if stack:
                        stack[-1][1].append(node)
                    else:
                        trees.append((start, node))
                elif not stack:
                    raise DataError(path, f"word {token!r} outside any tree", number)
                else:
                    stack[-1][1].append(token)
    if stack:
        raise DataError(path, "unbalanced brackets: '(' never closed", stack[0][0])
    return trees


def _node(parts: list, path, line: int) -> Tree:
    """[label, word] -> a leaf; [label?, subtree...] -> a node ('' when the label is missing)."""
    if len(parts) == 2 and all(isinstance(p, str) for p in parts):
        return Tree(parts[0], word=parts[1])
    label = parts[0] if parts and isinstance(parts[0], str) else ""
    children = parts[1:] if label else parts
    if not children or not all(isinstance(c, Tree) for c in children):
        raise DataError(path, f"malformed node ({' '.join(map(str, parts))}): expected (label word) or subtrees", line)
    return Tree(label, tuple(children))


# The Treebank tokenisation (the conventions of the Penn Treebank's tokenizer.sed): quotes become `` and '',
# punctuation and brackets are split off, brackets are written -LRB- and so on, and clitics are split
# ("don't" -> "do n't", "John's" -> "John 's").
_RULES = [
    (re.compile(r'^"'), "``"),
    (re.compile(r"(``)"), r" \1 "),
    (re.compile(r'([ (\[{<])"'), r"\1 `` "),
    (re.compile(r"([:,])([^\d])"), r" \1 \2"),
    (re.compile(r"([:,])$"), r" \1 "),
    (re.compile(r"\.\.\."), " ... "),
    (re.compile(r"[;@#$%&]"), r" \g<0> "),
    (re.compile(r'([^\.])(\.)([\]\)}>"\']*)\s*$'), r"\1 \2\3 "),
    (re.compile(r"[?!]"), r" \g<0> "),
    (re.compile(r"([^'])' "), r"\1 ' "),
    (re.compile(r"[\]\[\(\)\{\}<>]"), r" \g<0> "),
    (re.compile(r"--"), " -- "),
    (re.compile(r'"'), " '' "),
    (re.compile(r"(\S)('')"), r"\1 \2 "),
    (re.compile(r"([^' ])('[sSmMdD]|') "), r"\1 \2 "),
    (re.compile(r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) "), r"\1 \2 "),
]


def ptb_tokenize(text: str) -> list[str]:
    """Plain text -> Penn Treebank tokens: 'It's (very) good.' -> ['It', "'s", '-LRB-', 'very', '-RRB-',
    'good', '.']. Words are split on whitespace; letters of any script are kept as written."""
    text = f" {text.strip()} "
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return [BRACKETS.get(token, token) for token in f" {text} ".split()]


def request_tokens(request: dict) -> list[str]:
    """The words of a served request: its `tokens` list as given, else its `sentence` PTB-tokenised;
    ConfigError naming the column when there is none or it has no words."""
    tokens = request.get("tokens")
    if tokens is None or isinstance(tokens, str):
        text = request.get("sentence")
        if not isinstance(text, str):
            raise ConfigError("sentence: a string is needed (or a 'tokens' list)")
        tokens, column = ptb_tokenize(text), "sentence"
    else:
        tokens, column = [str(t) for t in list(tokens)], "tokens"
    if not tokens:
        raise ConfigError(f"{column}: the sentence has no words")
    return tokens
