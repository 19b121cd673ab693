"""Writes the match columns of an A2M/FASTA alignment as a plain aligned FASTA that
adabmDCA accepts: insertions (lower case, '.') removed, sequences with letters outside the
20 amino acids dropped, duplicates removed (adabmDCA removes them too). Both tools then train
on the same sequences. Usage: clean_msa.py IN OUT"""
import sys

ALPHABET = set("-ACDEFGHIKLMNPQRSTVWY")


def records(path):
    name, seq = None, []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith(">"):
                if name is not None:
                    yield name, "".join(seq)
                name, seq = line[1:], []
            elif line:
                seq.append(line)
    if name is not None:
        yield name, "".join(seq)


def main(src, dst):
    seen, kept, dropped, dups = set(), 0, 0, 0
    with open(dst, "w") as out:
        for name, seq in records(src):
            match = "".join(c for c in seq if c.isupper() or c == "-")
            if set(match) - ALPHABET:
                dropped += 1
                continue
            if match in seen:
                dups += 1
                continue
            seen.add(match)
            kept += 1
            out.write(f">{name}\n{match}\n")
    print(f"clean_msa: kept {kept}, dropped {dropped} with unknown letters, {dups} duplicates", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
