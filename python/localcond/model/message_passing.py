"""A message-passing network for the local molar conductivity.

SchNet-style continuous-filter convolutions: species embeddings h_i are
updated ``n_layers`` times with messages h_j · W_l(r_ij) from neighbors within
the cutoff, where the filters W_l share the hidden layer of a small network of a
Gaussian expansion of r_ij, times a cosine envelope (so messages vanish
smoothly at the cutoff); a per-node readout gives λ_i in S cm² mol⁻¹. Receptive field: n_layers × cutoff.

The filters are functions of r_ij alone, and an edge list holds most pairs
twice (i→j and j→i, with the same |r|). The forward pass therefore evaluates
the filter network once per distinct value of r (edges whose r compare equal,
found with a hash table, see ``_equal_r_representatives``) and gathers the
result for every edge; the per-layer heads are one product with their
concatenated weights. Outputs are those of the per-edge evaluation (the same
arithmetic on the same numbers), and so are gradients with respect to the
parameters. (A derivative with respect to ``edge_vec`` reaches only the edge
that represents a group of equal r; with respect to positions that is still
right for a pair listed in both directions, not for a coincidence between
unrelated pairs. The contract differentiates nothing but the parameters.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import List, Tuple

import torch

from localcond.model.contract import ModelMetadata

KIND = "message-passing"


def _equal_r_representatives(r: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Group edges whose distances are equal: returns ``reps`` (one edge index per
    group, increasing) and ``inverse`` (for each edge, the position in ``reps`` of
    an edge whose r compares equal to its own).

    The filter network is a function of the value of r only, so any two edges
    with ``r_a == r_b`` get identical filters, whatever atoms or images they
    join: a pair listed in both directions (i→j, j→i, including an atom and its
    own periodic image), or a coincidence. An edge whose partner is absent
    (local→ghost), or whose partner's r differs in the last bit (vectors that
    are not exact negations of each other), or which loses a hash collision,
    simply stays its own representative. Correctness never depends on the hash;
    only the savings do.

    One pass, O(n_edges): every edge writes its index into a table slot chosen
    by a hash of r (an arbitrary writer wins a slot, and every edge
    of a group of equal r writes the same slot), then reads the slot's winner
    back and takes it as its representative if the winner's r equals its own.
    Slots that are read were all written, so the table needs no initialisation.
    """
    n = r.shape[0]
    size = 16
    while size < 4 * n:  # load ≤ 1/4, ≈ 1/8 with most pairs listed twice
        size *= 2
    # the hash: integer mantissa and exponent of r (exact, so equal r give equal
    # slots; TorchScript cannot reinterpret float bits as integers)
    mantissa, exponent = torch.frexp(torch.where(torch.isfinite(r), r, torch.zeros_like(r)))
    digits = (mantissa.to(torch.float64) * 9007199254740992.0).to(torch.int64)  # 2**53
    # fold the digits of float64 (53 bits), float32 (24, from bit 29 up) and
    # float16/bfloat16 (11/8, from bit 42/45 up) onto the low bits
    digits = digits ^ (digits >> 13) ^ (digits >> 29) ^ (digits >> 42)
    slot = (digits ^ exponent.to(torch.int64)) & (size - 1)
    ids = torch.arange(n, device=r.device)
    table = torch.empty(size, dtype=torch.int64, device=r.device).scatter_(0, slot, ids)
    winner = table.index_select(0, slot)
    rep = torch.where(r.index_select(0, winner) == r, winner, ids)
    is_rep = rep == ids  # a winner is its own representative
    reps = torch.nonzero(is_rep).squeeze(1)
    position = torch.cumsum(is_rep, 0) - 1
    return reps, position.index_select(0, rep)


class Interaction(torch.nn.Module):
    def __init__(self, n_features: int) -> None:
        super().__init__()
        # Applied by MessagePassingConductivity, concatenated with the other
        # layers' heads (kept as a Linear for the state_dict layout).
        self.filter_head = torch.nn.Linear(n_features, n_features, bias=False)
        self.update = torch.nn.Sequential(
            torch.nn.Linear(n_features, n_features), torch.nn.SiLU(),
            torch.nn.Linear(n_features, n_features),
        )

    def forward(
        self, h: torch.Tensor, filters: torch.Tensor, center: torch.Tensor, neighbor: torch.Tensor,
        nodes: torch.Tensor,
    ) -> torch.Tensor:
        """Update the features of ``nodes`` from messages h_j * W(r_ij) along the given
        edges (all of whose centers are in ``nodes``); ``filters`` is W(r_ij) for
        those edges (this layer's head of the filter network)."""
        messages = h.index_select(0, neighbor).mul_(filters)  # in place: one E×F tensor less
        aggregated = torch.zeros_like(h).index_add_(0, center, messages)
        return h.index_add(0, nodes, self.update(aggregated.index_select(0, nodes)))


class MessagePassingConductivity(torch.nn.Module):
    def __init__(
        self, n_species: int, cutoff: float, n_layers: int = 3, n_features: int = 64,
        n_basis: int = 16,
    ) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.embedding = torch.nn.Embedding(n_species, n_features)
        self.register_buffer("basis_centers", torch.linspace(0.0, cutoff, n_basis))
        self.basis_width = float(cutoff) / n_basis
        # filter network: a hidden layer shared by all layers, then one bias-free
        # linear head per layer. The envelope multiplies the hidden layer, which
        # scales each (linear) head's output by it at a third of the cost.
        self.filter_hidden = torch.nn.Sequential(torch.nn.Linear(n_basis, n_features), torch.nn.SiLU())
        self.interactions = torch.nn.ModuleList([Interaction(n_features) for _ in range(n_layers)])
        self.readout = torch.nn.Sequential(
            torch.nn.Linear(n_features, n_features), torch.nn.SiLU(),
            torch.nn.Linear(n_features, 1),
        )

    def forward(
        self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor, n_local: int
    ) -> torch.Tensor:
        center = edge_index[0]
        neighbor = edge_index[1]
        n_nodes = species.shape[0]
        n_layers = len(self.interactions)
        # Work only where it reaches an output: layer L must update the output
        # nodes, layer L-1 also their neighbors, and so on back to layer 1.
        needed = torch.arange(n_nodes, device=species.device) < n_local
        node_sets: List[torch.Tensor] = []
        edge_sets: List[torch.Tensor] = []
        for _ in range(n_layers):
            edge_mask = needed.index_select(0, center)
            node_sets.append(needed)
            edge_sets.append(edge_mask)
            needed = needed.index_fill(0, neighbor[edge_mask], True)
        node_sets.reverse()
        edge_sets.reverse()

        used = torch.nonzero(edge_sets[0]).squeeze(1)  # layer 1 uses the most edges
        n_used = used.shape[0]
        center = center.index_select(0, used)
        neighbor = neighbor.index_select(0, used)
        r = torch.linalg.vector_norm(edge_vec.index_select(0, used), dim=1)
        layer_edges: List[torch.Tensor] = []  # per layer, positions in `used`
        for layer in range(n_layers):
            layer_edges.append(torch.nonzero(edge_sets[layer].index_select(0, used)).squeeze(1))

        # The filters depend on r only: evaluate them once per distinct r.
        reps, inverse = _equal_r_representatives(r)
        # Rows of the heads each layer needs: when later layers use fewer edges
        # (ghost nodes), order the representatives by the deepest layer using
        # them, so that layer l needs the first counts[l] rows only.
        counts: List[int] = [reps.shape[0]] * n_layers
        if n_layers > 1 and layer_edges[n_layers - 1].shape[0] < n_used:
            depth = torch.zeros(n_used, dtype=torch.int64, device=r.device)
            for layer in range(n_layers):
                depth.index_fill_(0, layer_edges[layer], layer + 1)
            rep_depth = torch.zeros(reps.shape[0], dtype=torch.int64, device=r.device)
            rep_depth = rep_depth.scatter_reduce_(0, inverse, depth, "amax")
            groups: List[torch.Tensor] = []
            total = 0
            for k in range(n_layers, 0, -1):  # deepest first
                group = torch.nonzero(rep_depth == k).squeeze(1)
                groups.append(group)
                total += group.shape[0]
                counts[k - 1] = total
            order = torch.cat(groups)
            rank = torch.empty_like(order).scatter_(
                0, order, torch.arange(order.shape[0], device=r.device))
            reps = reps.index_select(0, order)
            inverse = rank.index_select(0, inverse)

        r = r.index_select(0, reps)
        envelope = 0.5 * (torch.cos(math.pi * r / self.cutoff) + 1.0)
        envelope = torch.where(r < self.cutoff, envelope, torch.zeros_like(envelope))
        offsets = (r.unsqueeze(1) - self.basis_centers.unsqueeze(0)) / self.basis_width
        basis = torch.exp(-0.5 * offsets * offsets)
        hidden = self.filter_hidden(basis) * envelope.unsqueeze(1)

        heads: List[torch.Tensor] = []
        for interaction in self.interactions:
            heads.append(interaction.filter_head.weight)
        n_features = hidden.shape[1]
        filters: List[torch.Tensor] = []
        if counts[0] == counts[n_layers - 1]:
            # all layers need all rows: one product with the concatenated heads
            product = torch.mm(hidden, torch.cat(heads, 0).t())
            for layer in range(n_layers):
                filters.append(product[:, layer * n_features:(layer + 1) * n_features])
        else:
            for layer in range(n_layers):
                filters.append(torch.mm(hidden[:counts[layer]], heads[layer].t()))

        h = self.embedding(species)
        for layer, interaction in enumerate(self.interactions):
            edges = layer_edges[layer]
            nodes = torch.nonzero(node_sets[layer]).squeeze(1)
            if edges.shape[0] < n_used:
                edge_filters = filters[layer].index_select(0, inverse.index_select(0, edges))
                h = interaction(h, edge_filters, center.index_select(0, edges),
                                neighbor.index_select(0, edges), nodes)
            else:
                edge_filters = filters[layer].index_select(0, inverse)
                h = interaction(h, edge_filters, center, neighbor, nodes)
        return self.readout(h[:n_local]).squeeze(1)


def make_untrained_model(
    species: Sequence[str], charges: Sequence[float], cutoff: float = 10.0, n_layers: int = 3,
    n_features: int = 64, dtype: str = "float32", seed: int = 0,
) -> tuple[MessagePassingConductivity, ModelMetadata]:
    """The architecture with random weights: realistic cost, meaningless values.

    Used by benchmarks and by tests of multi-layer plumbing; its metadata say
    ``trained: false``.
    """
    torch.manual_seed(seed)
    module = MessagePassingConductivity(len(species), cutoff, n_layers, n_features)
    metadata = ModelMetadata(
        species=tuple(species),
        charges=tuple(float(q) for q in charges),
        cutoff=float(cutoff),
        n_layers=n_layers,
        dtype=dtype,
        kind=KIND,
        description=(
            f"UNTRAINED message-passing network with random weights (seed {seed}, "
            f"{n_layers} layers, {n_features} features): realistic cost, meaningless values"
        ),
        trained=False,
    )
    return module, metadata
