"""Family definitions: Omniglot alphabets (and augmented families), the WordNet hierarchy, definitions documents, unsupervised pools."""
