"""WordNet 3.0 access for ImageNet wnids (``n01440764`` = noun synset at offset 1440764).

Where the database comes from, first found wins:

1. an explicit folder (``--wordnet-dir``),
2. the ``FEWTASK_WORDNET_DIR`` environment variable,
3. nltk's own installed ``wordnet`` corpus (``nltk.download('wordnet')``),
4. Debian's ``/usr/share/wordnet`` (``apt-get install wordnet-base wordnet-sense-index``).

A bare WordNet database folder (Debian's, or Princeton's ``WordNet-3.0/dict``) lacks
nothing nltk needs except, on Debian, the ``lexnames`` file. For such a folder we make
an nltk-readable corpus folder in a cache: copies of the database files (nltk
refuses symlinks and hard links that lead out of a corpus) plus a ``lexnames`` written from the WordNet documentation (lexnames(5WN)).

Only WordNet 3.0 is accepted: ImageNet wnids are 3.0 offsets, and other versions put
different synsets at the same offsets.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from fewtask_data.errors import FewtaskError

ENV_VAR = "FEWTASK_WORDNET_DIR"
DEBIAN_DIR = Path("/usr/share/wordnet")
CACHE_ENV_VAR = "FEWTASK_CACHE"
CACHE_PREFIX = "nltk-wordnet-"

# The files nltk's WordNetCorpusReader opens (index.sense/cntlist.rev only lazily).
DATABASE_FILES = (
    "data.noun", "data.verb", "data.adj", "data.adv",
    "index.noun", "index.verb", "index.adj", "index.adv",
    "noun.exc", "verb.exc", "adj.exc", "adv.exc",
)
OPTIONAL_FILES = ("index.sense", "cntlist.rev")

# The 45 lexicographer files of WordNet 3.0 (lexnames(5WN)): number, name, syntactic
# category (1 noun, 2 verb, 3 adjective, 4 adverb). Debian's packages omit this file.
LEXNAMES = (
    ("adj.all", 3), ("adj.pert", 3), ("adv.all", 4),
    ("noun.Tops", 1), ("noun.act", 1), ("noun.animal", 1), ("noun.artifact", 1),
    ("noun.attribute", 1), ("noun.body", 1), ("noun.cognition", 1), ("noun.communication", 1),
    ("noun.event", 1), ("noun.feeling", 1), ("noun.food", 1), ("noun.group", 1),
    ("noun.location", 1), ("noun.motive", 1), ("noun.object", 1), ("noun.person", 1),
    ("noun.phenomenon", 1), ("noun.plant", 1), ("noun.possession", 1), ("noun.process", 1),
    ("noun.quantity", 1), ("noun.relation", 1), ("noun.shape", 1), ("noun.state", 1),
    ("noun.substance", 1), ("noun.time", 1),
    ("verb.body", 2), ("verb.change", 2), ("verb.cognition", 2), ("verb.communication", 2),
    ("verb.competition", 2), ("verb.consumption", 2), ("verb.contact", 2), ("verb.creation", 2),
    ("verb.emotion", 2), ("verb.motion", 2), ("verb.perception", 2), ("verb.possession", 2),
    ("verb.social", 2), ("verb.stative", 2), ("verb.weather", 2),
    ("adj.ppl", 3),
)

HOW_TO_FIX = (
    "install WordNet 3.0 with `apt-get install wordnet-base wordnet-sense-index` "
    "(gives /usr/share/wordnet) or `python -c \"import nltk; nltk.download('wordnet')\"`, "
    f"or pass --wordnet-dir / set {ENV_VAR} to a WordNet 3.0 database folder"
)


def lexnames_text() -> str:
    return "".join(f"{i:02d}\t{name}\t{cat}\n" for i, (name, cat) in enumerate(LEXNAMES))


def wnid_offset(wnid: str) -> int:
    """The data.noun byte offset of an ImageNet wnid, or FewtaskError."""
    if not (isinstance(wnid, str) and len(wnid) == 9 and wnid[0] == "n" and wnid[1:].isdigit()):
        raise FewtaskError(f"{wnid!r} is not a WordNet noun id; expected 'n' and 8 digits, e.g. n01440764")
    return int(wnid[1:])


def is_wordnet30(folder: Path) -> bool:
    """True when folder holds the WordNet 3.0 noun database (entity sits at offset 1740)."""
    try:
        with open(folder / "data.noun", "rb") as fh:
            fh.seek(1740)
            return fh.readline().startswith(b"00001740 03 n 01 entity ")
    except OSError:
        return False


def _missing_files(folder: Path) -> list[str]:
    return [name for name in DATABASE_FILES if not (folder / name).is_file()]


def _nltk_installed_corpus() -> Path | None:
    """nltk's own wordnet corpus folder when one is installed (unzipped or zipped)."""
    try:
        import nltk.data

        found = Path(str(nltk.data.find("corpora/wordnet")))
    except Exception:  # LookupError, or a broken nltk data path: try the other sources
        return None
    # our own cached copy (added to nltk.data.path by nltk_corpus_dir) is not nltk's corpus
    return None if CACHE_PREFIX in str(found) else found


def _cache_root() -> Path:
    base = os.environ.get(CACHE_ENV_VAR) or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fewtask"


def nltk_corpus_dir(database: Path) -> Path:
    """An nltk-readable corpus folder for a WordNet database folder: the folder itself
    when it already has ``lexnames``, else a cached ``<root>/corpora/wordnet`` of
    copies of the database files plus a written lexnames. nltk only opens files under its data
    path, so the corpus's data root is added to ``nltk.data.path``."""
    import nltk.data

    database = database.resolve()
    if (database / "lexnames").is_file():
        corpus = database
    else:
        corpus = _cached_corpus(database)
    allowed = str(corpus if corpus == database else corpus.parent.parent)
    if allowed not in nltk.data.path:
        nltk.data.path.append(allowed)
    return corpus


def _cached_corpus(database: Path) -> Path:
    stat = (database / "data.noun").stat()  # a changed database gets a fresh copy
    key = hashlib.sha256(f"{database}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    for base in (_cache_root(), Path(tempfile.gettempdir()) / f"fewtask-cache-{os.getuid()}"):
        data_root = base / f"{CACHE_PREFIX}{key}"
        corpus = data_root / "corpora" / "wordnet"
        if (corpus / "lexnames").is_file() and (corpus / "data.noun").exists():
            return corpus
        try:
            corpus.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=corpus.parent))
            for name in DATABASE_FILES + OPTIONAL_FILES:
                if (database / name).is_file():
                    # nltk refuses symlinks leaving the corpus and multiply-linked files: copy (~36 MB, once)
                    shutil.copyfile(database / name, tmp / name)
            (tmp / "lexnames").write_text(lexnames_text())
            try:
                tmp.rename(corpus)  # atomic; a concurrent process may have won the race
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
            if (corpus / "lexnames").is_file():
                return corpus
        except OSError:
            continue
    raise FewtaskError(f"cannot write an nltk corpus folder for WordNet at {database}; set {CACHE_ENV_VAR} to a writable folder")


def locate(wordnet_dir: str | Path | None = None) -> tuple[str, Path]:
    """(source description, folder) of the WordNet 3.0 database to use, or one clear error."""
    candidates: list[tuple[str, Path]] = []
    if wordnet_dir:
        candidates.append(("--wordnet-dir", Path(wordnet_dir)))
    elif os.environ.get(ENV_VAR):
        candidates.append((ENV_VAR, Path(os.environ[ENV_VAR])))
    else:
        installed = _nltk_installed_corpus()
        if installed is not None:
            return "nltk corpus", installed
        candidates.append(("Debian wordnet-base", DEBIAN_DIR))
    source, folder = candidates[0]
    if not folder.is_dir():
        if source == "Debian wordnet-base":
            raise FewtaskError(f"WordNet 3.0 not found (no nltk wordnet corpus, no {DEBIAN_DIR}); {HOW_TO_FIX}")
        raise FewtaskError(f"WordNet folder {folder} (from {source}) does not exist; {HOW_TO_FIX}")
    missing = _missing_files(folder)
    if missing:
        raise FewtaskError(f"WordNet folder {folder} (from {source}) lacks {', '.join(missing)}; {HOW_TO_FIX}")
    if not is_wordnet30(folder):
        raise FewtaskError(f"WordNet folder {folder} (from {source}) is not WordNet 3.0 (ImageNet wnids need 3.0); {HOW_TO_FIX}")
    return source, folder


class WordNet:
    """Noun-synset look-ups by wnid over an nltk WordNetCorpusReader."""

    def __init__(self, reader, source: str, folder: Path):
        self._reader = reader
        self.source = source
        self.folder = folder

    def synset(self, wnid: str):
        offset = wnid_offset(wnid)
        try:
            with warnings.catch_warnings():  # nltk warns and returns None for a bad offset
                warnings.simplefilter("ignore")
                syn = self._reader.synset_from_pos_and_offset("n", offset)
        except Exception:
            syn = None
        if syn is None or syn.offset() != offset:
            raise FewtaskError(f"{wnid} is not a WordNet 3.0 noun synset; check the class id")
        return syn

    @functools.lru_cache(maxsize=None)
    def parents(self, wnid: str) -> tuple[str, ...]:
        """Direct hypernyms (class and instance), as sorted wnids: ImageNet's is_a links."""
        syn = self.synset(wnid)
        hyper = syn.hypernyms() + syn.instance_hypernyms()
        return tuple(sorted({f"n{s.offset():08d}" for s in hyper}))

    @functools.lru_cache(maxsize=None)
    def lemma(self, wnid: str) -> str:
        """The synset's first lemma name, e.g. 'carnivore', 'great_white_shark'."""
        return self.synset(wnid).lemma_names()[0]

    def words(self, wnid: str) -> str:
        return ", ".join(name.replace("_", " ") for name in self.synset(wnid).lemma_names())


def _reader_class():
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class Reader(WordNetCorpusReader):
        """nltk's reader without the start-up mapping to another WordNet version: nltk
        3.10 builds it from index.sense twice on every load (seconds), and we only
        ever read WordNet 3.0, checked by locate()."""

        def map_wn(self, version="wordnet"):
            return None

    return Reader


@functools.lru_cache(maxsize=4)
def _open(source: str, folder: Path) -> WordNet:
    if source == "nltk corpus":  # a path pointer also covers a zipped corpus
        import nltk.data

        root = nltk.data.find("corpora/wordnet")
    else:
        root = str(nltk_corpus_dir(folder))
    with warnings.catch_warnings():  # no multilingual (OMW) data is needed or wanted
        warnings.simplefilter("ignore")
        reader = _reader_class()(root, None)
    return WordNet(reader, source, folder)


def load_wordnet(wordnet_dir: str | Path | None = None) -> WordNet:
    """Open WordNet 3.0 from the first available source (see module doc)."""
    source, folder = locate(wordnet_dir)
    return _open(source, Path(folder))


def wordnet_available(wordnet_dir: str | Path | None = None) -> tuple[bool, str]:
    """(True, source) when WordNet 3.0 can be opened, else (False, the reason); for test skips."""
    try:
        source, folder = locate(wordnet_dir)
    except FewtaskError as err:
        return False, str(err)
    return True, f"{source} at {folder}"
