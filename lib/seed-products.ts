// The Woodytoys demo catalogue, loaded on a service's first start: the catalog seeds these products,
// the stock service opening levels for the same ids (api/stock/seed.ts). Shared data, so it lives
// here rather than in one service that the other would import.
export interface SeedProduct {
  id: string;
  name: string;
  category: string;
  description: string;
  priceCents: number;
}

export const seedProducts: SeedProduct[] = [
  { id: 'wooden-train', name: 'Wooden train', category: 'vehicles', description: 'A beech locomotive with three magnetic wagons.', priceCents: 3490 },
  { id: 'wooden-car', name: 'Wooden car', category: 'vehicles', description: 'A chunky push car with rubber-rimmed wheels.', priceCents: 1290 },
  { id: 'fire-truck', name: 'Fire truck', category: 'vehicles', description: 'A red fire truck with a turning ladder.', priceCents: 2990 },
  { id: 'tractor-trailer', name: 'Tractor and trailer', category: 'vehicles', description: 'A green tractor pulling a tipping trailer.', priceCents: 2790 },
  { id: 'sailing-boat', name: 'Sailing boat', category: 'vehicles', description: 'A floating boat with a cotton sail.', priceCents: 1990 },
  { id: 'biplane', name: 'Biplane', category: 'vehicles', description: 'A two-wing plane with a spinning propeller.', priceCents: 1690 },
  { id: 'train-track-set', name: 'Train track set', category: 'vehicles', description: 'Forty pieces of track, two bridges and a tunnel.', priceCents: 4990 },
  { id: 'building-blocks-50', name: 'Building blocks (50)', category: 'construction', description: 'Fifty natural and coloured blocks in a crate.', priceCents: 2490 },
  { id: 'building-blocks-100', name: 'Building blocks (100)', category: 'construction', description: 'A hundred blocks for ambitious architects.', priceCents: 3990 },
  { id: 'marble-run', name: 'Marble run', category: 'construction', description: 'Stackable chutes and towers with twenty glass marbles.', priceCents: 5490 },
  { id: 'castle-kit', name: 'Castle kit', category: 'construction', description: 'Towers, walls and a drawbridge to build a castle.', priceCents: 4490 },
  { id: 'tool-bench', name: 'Tool bench', category: 'construction', description: 'A workbench with hammer, screws and a vice.', priceCents: 5990 },
  { id: 'stacking-rainbow', name: 'Stacking rainbow', category: 'baby', description: 'Seven nesting arches in rainbow colours.', priceCents: 2290 },
  { id: 'shape-sorter', name: 'Shape sorter', category: 'baby', description: 'A box with twelve shapes to post through.', priceCents: 1890 },
  { id: 'baby-rattle', name: 'Baby rattle', category: 'baby', description: 'A maple rattle with sliding beads.', priceCents: 890 },
  { id: 'pull-along-duck', name: 'Pull-along duck', category: 'baby', description: 'A duck whose feet flap as it is pulled.', priceCents: 1490 },
  { id: 'stacking-rings', name: 'Stacking rings', category: 'baby', description: 'Five rings on a rocking base.', priceCents: 1190 },
  { id: 'bead-maze', name: 'Bead maze', category: 'baby', description: 'Coloured beads on looping wires.', priceCents: 2190 },
  { id: 'jigsaw-farm', name: 'Farm jigsaw', category: 'puzzles', description: 'A twelve-piece farmyard puzzle with knobs.', priceCents: 990 },
  { id: 'jigsaw-world-map', name: 'World map jigsaw', category: 'puzzles', description: 'A hundred pieces, one per country group.', priceCents: 2490 },
  { id: 'tangram', name: 'Tangram', category: 'puzzles', description: 'The seven classic pieces and a book of shapes.', priceCents: 1290 },
  { id: 'burr-puzzle', name: 'Burr puzzle', category: 'puzzles', description: 'Six interlocking sticks; taking it apart is the easy part.', priceCents: 1090 },
  { id: 'number-puzzle', name: 'Number puzzle', category: 'puzzles', description: 'Digits 0 to 9 to count and place.', priceCents: 1390 },
  { id: 'chess-set', name: 'Chess set', category: 'games', description: 'A folding board with hand-turned pieces.', priceCents: 3990 },
  { id: 'domino-set', name: 'Domino set', category: 'games', description: 'Twenty-eight dominoes in a sliding box.', priceCents: 1590 },
  { id: 'memory-game', name: 'Memory game', category: 'games', description: 'Thirty-two tiles of forest animals.', priceCents: 1790 },
  { id: 'tic-tac-toe', name: 'Tic-tac-toe', category: 'games', description: 'A travel board with turning cubes.', priceCents: 990 },
  { id: 'skittles', name: 'Skittles', category: 'games', description: 'Nine skittles and two balls for the garden.', priceCents: 2690 },
  { id: 'spinning-top', name: 'Spinning top', category: 'games', description: 'A classic top that spins for a minute.', priceCents: 590 },
  { id: 'yo-yo', name: 'Yo-yo', category: 'games', description: 'A beech yo-yo with a cotton string.', priceCents: 490 },
  { id: 'dolls-house', name: "Doll's house", category: 'pretend-play', description: 'Three floors, a staircase and eleven pieces of furniture.', priceCents: 8990 },
  { id: 'play-kitchen', name: 'Play kitchen', category: 'pretend-play', description: 'A kitchen with oven, sink and clicking knobs.', priceCents: 9990 },
  { id: 'tea-set', name: 'Tea set', category: 'pretend-play', description: 'Teapot, four cups and a tray.', priceCents: 2190 },
  { id: 'fruit-cutting-set', name: 'Fruit cutting set', category: 'pretend-play', description: 'Velcro fruit, a knife and a board.', priceCents: 1990 },
  { id: 'toy-cash-register', name: 'Toy cash register', category: 'pretend-play', description: 'A till with a ringing bell and coins.', priceCents: 3290 },
  { id: 'puppet-theatre', name: 'Puppet theatre', category: 'pretend-play', description: 'A table-top theatre with curtains.', priceCents: 4290 },
  { id: 'xylophone', name: 'Xylophone', category: 'music', description: 'Eight tuned metal bars on a wooden frame.', priceCents: 1990 },
  { id: 'wooden-drum', name: 'Wooden drum', category: 'music', description: 'A drum with two beaters.', priceCents: 2290 },
  { id: 'maracas', name: 'Maracas', category: 'music', description: 'A pair of painted maracas.', priceCents: 790 },
  { id: 'rocking-horse', name: 'Rocking horse', category: 'ride-on', description: 'A solid beech horse with a felt saddle.', priceCents: 12990 },
  { id: 'balance-bike', name: 'Balance bike', category: 'ride-on', description: 'A pedal-free first bike, saddle adjustable.', priceCents: 8490 },
];
