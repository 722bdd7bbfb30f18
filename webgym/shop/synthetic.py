"""The embedded default catalog: a seeded generator of WebShop-style products.

``generate_products(n, seed)`` builds ``n`` products in WebShop's schema from the vocabulary
tables below: 23 top-level categories, 145 product types, each type with its own attributes,
option dimensions and price band. Products come in *families* of one type (same query, same
category, usually the same brand, near-identical titles, the same option dimensions and mostly
the same option values, overlapping prices) whose siblings differ in one or two attributes and
in price, so options and search do not single out a goal's target: a goal naming a type,
attributes, options and a price ceiling has same-type distractors that fail one of them, and a
task is solved by reading item pages, not by buying the first search hit.

Text hygiene, which the reward relies on: a product's title, bullet points and description
mention only its own attributes (plus neutral words: brand, adjective, type name), never an
attribute it lacks and never an option value. Every attribute is in the ``Attributes`` list, but
only some (``SHOWN_SHARE``) are named in the family's listing copy, the text search indexes
(title, first bullet, description); the others are in the Attributes list and later bullets
only, which WebShop's search does not index. Deterministic: ``random.Random(seed)`` is the
only source of randomness. Imports only ``webgym.shop.schema``.

Out of distribution: ``generate_ood_products`` builds products of ``OOD_PRODUCT_TYPES`` (2 more
categories, 10 more types: the ``ood`` split's, absent from the embedded catalog and so from
train), by the same family rules and templates but from their own rng stream and their own
vocabulary: no word of their category and type names, attributes, brands or adjectives is
(after stemming) a word of any embedded product (``tests/webgym/shop/test_ood.py`` checks it). The
10,000 embedded products do not depend on them.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from webgym.shop.schema import CATEGORY_SEPARATOR, Product, price_tag

# ---------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------

# Option value lists. A type names its dimensions as "dim" (values from the list of that name)
# or "dim=list". Values within one list are far apart under WebShop's fuzzy option match
# (token-set ratio <= 85), except in lists used for "size", which the reward matches exactly.
OPTION_VALUES: dict[str, list[str]] = {
    "color": "black white red navy grey beige green pink purple brown ivory teal burgundy olive "
    "khaki charcoal silver gold coral mint mustard yellow orange".split(),
    "wood": "walnut oak espresso white black grey cherry natural".split(),
    "metal": ["gold", "silver", "copper", "platinum", "bronze"],
    "apparel": ["x-small", "small", "medium", "large", "x-large", "xx-large"],
    "shoe": "6 6.5 7 7.5 8 8.5 9 9.5 10 10.5 11 12".split(),
    "ring": "5 6 7 8 9 10 11".split(),
    "bed": ["twin", "full", "queen", "king", "california king"],
    "floz": ["2 fl oz", "4 fl oz", "8 fl oz", "12 fl oz", "16 fl oz", "33.8 fl oz"],
    "ounce": ["5 ounce", "8 ounce", "12 ounce", "16 ounce", "24 ounce", "32 ounce"],
    "pills": ["30 count", "60 count", "90 count", "120 count", "180 count", "240 count"],
    "wipes": ["80 count", "240 count", "480 count", "720 count", "960 count"],
    "bottle": ["12 oz", "18 oz", "24 oz", "32 oz", "40 oz", "64 oz"],
    "count": ["1 pack", "2 pack", "3 pack", "4 pack", "6 pack", "8 pack"],
    "dumbbell": ["5 lb", "10 lb", "15 lb", "20 lb", "25 lb", "30 lb", "40 lb", "50 lb"],
    "petfood": ["4 lb", "8 lb", "15 lb", "24 lb", "30 lb", "40 lb"],
    "pet": ["small", "medium", "large", "x-large"],
    "storage": ["64gb", "128gb", "256gb", "512gb", "1tb", "2tb"],
    "phone": ["iphone 15", "iphone 15 pro", "iphone 15 pro max", "galaxy s24", "pixel 8"],
    "length": ["3 ft", "6 ft", "10 ft", "15 ft"],
    "hose": ["25 ft", "50 ft", "75 ft", "100 ft"],
    "screen": ["24 inch", "27 inch", "32 inch", "34 inch"],
    "luggage": ["carry-on", "medium checked", "large checked", "3-piece set"],
    "tent": ["2 person", "4 person", "6 person", "8 person"],
    "diaper": ["newborn", "size 1", "size 2", "size 3", "size 4", "size 5", "size 6"],
    "pan": ["8 inch", "10 inch", "12 inch", "14 inch"],
    "scent": "lavender vanilla eucalyptus citrus unscented coconut sandalwood peppermint "
    "jasmine cedarwood".split(),
    "flavor": "chocolate vanilla strawberry honey cinnamon original mango caramel blueberry "
    "lemon".split(),
    "snack": ["sea salt", "barbecue", "sour cream", "jalapeno", "cheddar", "vinegar"],
    "roast": ["light roast", "medium roast", "dark roast", "espresso roast"],
    "material": "cotton linen polyester bamboo wool leather canvas nylon".split(),
    "hardmaterial": ["stainless steel", "ceramic", "glass", "bamboo", "aluminum", "acacia"],
    "style": "modern classic rustic minimalist vintage industrial bohemian farmhouse".split(),
    "pattern": "solid striped floral plaid geometric paisley gingham".split(),
    "fit": ["slim", "regular", "relaxed", "athletic"],
    "format": ["hardcover", "paperback", "spiral-bound"],
    "strength": ["light", "medium", "heavy", "extra heavy"],
    "gauge": ["10-47", "11-52", "12-53", "13-56"],
    "switch": ["red switch", "brown switch", "blue switch"],
    "voltage": ["12v", "20v", "40v"],
    "weight": ["lace", "fingering", "worsted", "chunky", "bulky"],
    "tip": ["0.5 mm", "0.7 mm", "1.0 mm"],
    "age": ["3-5 years", "6-8 years", "9-12 years", "teen", "adult"],
    "pieces": ["300 pieces", "500 pieces", "1000 pieces", "2000 pieces"],
    "shade": ["fair", "light", "medium", "tan", "deep"],
    # the out-of-distribution types' (OOD_CATEGORIES)
    "aperture": ["70mm", "80mm", "102mm", "127mm", "150mm", "203mm"],
    "magnification": ["8x42", "10x42", "10x50", "12x50", "15x70"],
    "eyepiece": ["6mm", "9mm", "12mm", "15mm", "25mm", "32mm"],
    "latitude": ["30 degrees north", "40 degrees north", "50 degrees north", "30 degrees south"],
    "capacity": ["1 gallon", "3 gallon", "5 gallon", "6.5 gallon", "7.9 gallon"],
    "closure": ["narrow mouth", "wide mouth"],
    "brew": ["beer", "wine", "cider", "mead"],
    "coil": ["3/8 inch x 25 ft", "3/8 inch x 50 ft", "1/2 inch x 25 ft", "1/2 inch x 50 ft"],
}

# category -> (breadcrumb root, attributes shared by the category's types, types). A type is
# "Subcategory|Type name|lowest price-highest price|attributes|option dimensions"; its query is
# the lower-cased type name and its breadcrumb "root › subcategory › type name".
# fmt: off
# fmt: off
CATEGORIES: dict[str, tuple[str, str, list[str]]] = {
    "beauty": ("Beauty & Personal Care", "cruelty free, vegan, dermatologist tested", [
        "Hair Care|Shampoo|7-38|sulfate free, paraben free, for dry hair, for oily hair, color "
        "safe, volumizing, with argan oil, anti dandruff|scent size=floz",
        "Hair Care|Conditioner|7-36|silicone free, for curly hair, leave in, deep conditioning,"
        " with keratin, detangling, for fine hair|scent size=floz",
        "Hair Care|Hair Oil|9-45|with rosemary oil, lightweight, heat protection, for hair "
        "growth, non greasy, frizz control|size=floz",
        "Skin Care|Face Moisturizer|12-60|with hyaluronic acid, oil free, fragrance free, for "
        "sensitive skin, with spf 30, non comedogenic, anti aging|size=floz",
        "Skin Care|Sunscreen|8-32|water resistant, reef safe, broad spectrum, spf 50, mineral "
        "based, for kids, sweat proof|size=floz",
        "Makeup|Lipstick|6-30|long lasting, matte finish, moisturizing, transfer proof, with "
        "vitamin e, highly pigmented|color",
        "Makeup|Mascara|6-28|waterproof, lengthening, smudge proof, clump free, for sensitive "
        "eyes, tubing formula|color=shade",
        "Bath & Body|Body Wash|5-25|moisturizing, with shea butter, exfoliating, for men, "
        "hypoallergenic, plant based|scent size=floz",
        "Fragrance|Eau de Parfum|25-140|long lasting, travel spray, floral notes, woody notes, "
        "for women, unisex, gift set|scent size=floz",
    ]),
    "grocery": ("Grocery & Gourmet Food", "gluten free, non gmo, kosher, usda organic", [
        "Snacks|Granola Bars|6-28|high protein, low sugar, with whole oats, nut free, "
        "individually wrapped, chewy texture|flavor count",
        "Snacks|Potato Chips|4-22|kettle cooked, baked not fried, family size, thin cut, no "
        "artificial flavors|flavor=snack count",
        "Snacks|Dark Chocolate|5-30|70 percent cacao, fair trade, dairy free, single origin, "
        "with almonds, low sugar|count size=ounce",
        "Beverages|Green Tea|5-25|caffeine free, loose leaf, in pyramid bags, with jasmine, "
        "antioxidant rich, cold brew friendly|count",
        "Beverages|Coffee Beans|9-45|whole bean, fair trade, single origin, low acid, small "
        "batch, decaf|flavor=roast size=ounce",
        "Pantry|Olive Oil|9-40|extra virgin, cold pressed, first harvest, in glass bottle, from"
        " italy, unfiltered|size=floz",
        "Pantry|Pasta|3-20|whole wheat, high fiber, made with chickpeas, bronze cut, from "
        "italy, quick cooking|count size=ounce",
        "Breakfast|Oatmeal|4-22|steel cut, instant, high fiber, no added sugar, with flax "
        "seeds, heart healthy|flavor count",
    ]),
    "clothing": ("Clothing", "machine washable, breathable fabric, tagless", [
        "Men|T-Shirt|9-35|crew neck, v neck, moisture wicking, pre shrunk, short sleeve, long "
        "sleeve, with pocket|color size=apparel fit",
        "Men|Hoodie|20-70|pullover, full zip, fleece lined, with kangaroo pocket, heavyweight, "
        "drawstring hood|color size=apparel",
        "Men|Jeans|25-90|straight leg, stretch denim, button fly, distressed, classic five "
        "pocket, narrow leg opening|color size=apparel fit",
        "Women|Leggings|12-50|high waisted, squat proof, with side pockets, buttery soft, tummy"
        " control, ankle length|color size=apparel",
        "Women|Maxi Dress|20-80|sleeveless, with pockets, wrap style, smocked waist, flowy hem,"
        " off shoulder|color size=apparel pattern",
        "Women|Rain Jacket|30-120|waterproof, packable, with adjustable hood, windproof, zip "
        "pockets, seam sealed|color size=apparel",
        "Unisex|Socks|8-30|cushioned sole, arch support, ankle cut, crew length, odor "
        "resistant, seamless toe|color size=apparel count",
        "Unisex|Pajama Set|18-60|button down, elastic waist, two piece, lightweight, long "
        "sleeve top|color size=apparel pattern",
    ]),
    "shoes": ("Shoes", "non slip, lightweight, cushioned insole", [
        "Athletic|Running Shoes|40-160|with arch support, wide toe box, responsive foam, "
        "reflective details, for flat feet|color size=shoe",
        "Outdoor|Hiking Boots|60-200|waterproof, ankle support, vibram outsole, insulated, lace"
        " up, steel toe|color size=shoe",
        "Casual|Sandals|15-70|adjustable straps, open toe, memory foam footbed, water friendly,"
        " slide style|color size=shoe",
        "Casual|Slippers|12-50|memory foam, faux fur lined, indoor outdoor sole, backless, "
        "washable|color size=shoe",
        "Casual|Sneakers|35-130|canvas upper, leather upper, low top, high top, slip resistant,"
        " vegan leather|color size=shoe",
        "Outdoor|Rain Boots|25-90|waterproof, mid calf, pull on handles, rubber sole, for "
        "women, for kids|color size=shoe",
    ]),
    "electronics": ("Electronics", "1 year warranty, fast charging, compact design", [
        "Headphones|Wireless Earbuds|20-180|noise cancelling, sweat resistant, with charging "
        "case, 30 hour battery, low latency, touch controls|color",
        "Headphones|Over-Ear Headphones|30-300|active noise cancelling, foldable, with "
        "microphone, hi res audio, 40 hour battery, memory foam ear cushions|color",
        "Accessories|Phone Case|8-40|shockproof, with magsafe, slim fit, clear back, with card "
        "holder, raised edges|color size=phone",
        "Accessories|USB-C Cable|6-25|braided nylon, 100w power delivery, right angle, data "
        "transfer|color size=length count",
        "Power|Power Bank|15-80|10000mah, magnetic wireless charging, with led display, dual "
        "usb ports, airline approved|color",
        "Audio|Bluetooth Speaker|20-200|waterproof, 360 degree sound, with bass boost, 24 hour "
        "playtime, portable|color",
        "Wearables|Smart Watch|30-300|heart rate monitor, with gps, sleep tracking, water "
        "resistant, always on display, 7 day battery|color",
    ]),
    "computers": ("Computers & Accessories", "plug and play, windows compatible, mac compatible", [
        "Peripherals|Wireless Mouse|10-80|ergonomic, silent click, rechargeable, bluetooth, for"
        " left hand, adjustable dpi|color",
        "Peripherals|Mechanical Keyboard|40-180|rgb backlit, hot swappable, tenkeyless, "
        "wireless, with wrist rest, aluminum frame|color style=switch",
        "Monitors|Computer Monitor|120-600|4k resolution, 144hz refresh rate, ips panel, height"
        " adjustable, usb-c input, curved screen|size=screen",
        "Storage|USB Flash Drive|6-60|usb 3.2, metal casing, with keychain loop, dual "
        "connector, password protected|size=storage count",
        "Storage|Portable SSD|50-300|rugged, usb 3.2, hardware encryption, shock resistant, "
        "pocket sized|color size=storage",
        "Peripherals|Webcam|25-150|1080p, with privacy cover, auto focus, dual microphones, "
        "wide angle lens, low light correction|color",
    ]),
    "home & kitchen": ("Home & Kitchen", "easy to clean, long lasting", [
        "Kitchen|Chef Knife|15-120|high carbon steel, full tang, ergonomic handle, with sheath,"
        " forged blade, japanese style|size=pan",
        "Kitchen|Frying Pan|15-90|nonstick, induction compatible, oven safe, with lid, pfoa "
        "free, cast iron|size=pan color",
        "Kitchen|Coffee Mug|8-35|microwave safe, double walled, with lid, insulated, handmade, "
        "large handle|color size=bottle",
        "Kitchen|Cutting Board|12-55|with juice groove, reversible, non slip feet, knife "
        "friendly, end grain|material=hardmaterial",
        "Bedding|Bed Sheets|25-120|deep pocket, 400 thread count, cooling, wrinkle resistant, "
        "hotel quality, oeko tex certified|color size=bed",
        "Bedding|Throw Pillow Cover|8-35|with hidden zipper, double sided, square shape, "
        "decorative, insert not included|color pattern count",
        "Bath|Bath Towel|15-60|quick dry, highly absorbent, plush, oversized, lint free, "
        "turkish cotton|color count",
        "Storage|Storage Bins|15-50|collapsible, with handles, stackable, with lids, fabric "
        "lined, for closet|color count",
    ]),
    "furniture": ("Furniture", "easy assembly, sturdy construction, space saving", [
        "Living Room|Coffee Table|60-300|with storage shelf, lift top, round, solid wood, "
        "tempered glass top, with drawers|color=wood style",
        "Living Room|Accent Chair|80-350|fully padded, swivel, with armrests, tufted back, "
        "velvet fabric, with ottoman|color style",
        "Living Room|TV Stand|60-280|for tvs up to 65 inches, with cable management, open "
        "shelving, with led lights, sliding barn doors|color=wood style",
        "Bedroom|Nightstand|35-160|with charging station, with drawer, open shelf, solid wood, "
        "set of two|color=wood style",
        "Study|Bookshelf|40-220|5 tier, adjustable shelves, wall mounted, ladder style, with "
        "anti tip kit|color=wood",
        "Dining|Bar Stool|40-180|counter height, swivel, with backrest, adjustable height, with"
        " footrest, set of two|color material",
    ]),
    "garden": ("Patio, Lawn & Garden", "weatherproof, uv protected, rust proof", [
        "Watering|Garden Hose|20-90|kink free, expandable, with spray nozzle, lead free, heavy "
        "duty, brass fittings|color size=hose",
        "Planters|Planter|12-70|with drainage hole, self watering, hanging, with saucer, frost "
        "resistant|color material=hardmaterial count",
        "Tools|Pruning Shears|10-45|bypass blade, sk5 steel, ergonomic grip, safety lock, for "
        "thick branches|color",
        "Wildlife|Bird Feeder|15-60|squirrel proof, hanging, with metal roof, easy to fill, for"
        " wild birds|color",
        "Lighting|Solar Path Lights|18-70|auto on off, 2700k warm glow, waterproof ip65, "
        "stainless steel stakes|color count",
        "Beds|Raised Garden Bed|40-220|galvanized steel, cedar wood, with legs, open bottom, "
        "deep root space|size=length",
    ]),
    "toys": ("Toys & Games", "non toxic, for ages 3 and up, educational", [
        "Building|Building Blocks|15-90|compatible with major brands, with storage bin, stem "
        "learning, magnetic, large pieces|count age",
        "Puzzles|Jigsaw Puzzle|10-35|thick pieces, with poster, glare free, family friendly, "
        "random cut|size=pieces style",
        "Plush|Plush Toy|10-45|ultra soft, machine washable, weighted, with sound, "
        "huggable|color",
        "Games|Board Game|15-60|for 2 to 6 players, strategy, quick to learn, family game "
        "night, party game, cooperative|age",
        "Vehicles|Remote Control Car|25-120|rechargeable battery, all terrain, high speed, "
        "2.4ghz, with lights|color",
        "Creative|Play Dough Set|10-35|with tools, scented, resealable tubs, wheat free|count",
    ]),
    "sports": ("Sports & Fitness", "sweat resistant, durable, portable", [
        "Yoga|Yoga Mat|15-90|extra thick, non slip, with carrying strap, eco friendly, "
        "alignment lines, 6mm|color",
        "Strength|Dumbbells|20-250|adjustable, neoprene coated, hex shape, rubber encased, with"
        " rack|size=dumbbell color",
        "Strength|Resistance Bands|10-40|with door anchor, latex free, with handles, fabric, "
        "stackable|color size=strength",
        "Cardio|Jump Rope|8-30|tangle free, ball bearings, adjustable length, weighted handles,"
        " speed cable|color",
        "Hydration|Water Bottle|10-45|insulated, leak proof, with straw lid, stainless steel, "
        "keeps drinks cold 24 hours|color size=bottle",
        "Recovery|Foam Roller|12-50|high density, ridged surface, for deep tissue, "
        "vibrating|color size=length",
    ]),
    "pet supplies": ("Pet Supplies", "vet recommended, pet safe, made in usa", [
        "Dogs|Dog Food|20-90|grain free, high protein, with real chicken, for puppies, for "
        "senior dogs, limited ingredient|flavor size=petfood",
        "Cats|Cat Litter|10-40|clumping, unscented, low dust, multi cat, lightweight formula, "
        "odor control|size=petfood",
        "Dogs|Dog Bed|25-120|orthopedic, washable cover, waterproof liner, calming donut, "
        "raised bolsters|color size=pet",
        "Cats|Cat Toy|5-25|interactive, with catnip, feather wand, rechargeable, self "
        "play|color count",
        "Dogs|Dog Leash|8-35|reflective, padded handle, hands free, retractable, with poop bag "
        "dispenser|color size=length",
        "Dogs|Dog Shampoo|8-30|oatmeal formula, tearless, for itchy skin, deodorizing, soap "
        "free|scent size=floz",
    ]),
    "office": ("Office Products", "refillable, smudge free, recycled materials", [
        "Writing|Gel Pens|6-28|quick drying, retractable, needle tip, assorted colors, comfort "
        "grip|count size=tip",
        "Paper|Notebook|5-30|college ruled, dotted pages, rigid cover, with elastic band, 200 "
        "pages, acid free paper|color size=format",
        "Desk|Desk Organizer|12-50|with drawers, mesh design, rotating, with pen holder, "
        "wooden|color",
        "Desk|Stapler|8-40|jam free, heavy duty, 20 sheet capacity, electric, with staples "
        "included|color",
        "Paper|Sticky Notes|4-20|super sticky, lined, pastel colors, 3x3 inch, pop up|count",
        "Seating|Office Chair|80-400|ergonomic, lumbar support, mesh back, with headrest, flip "
        "up arms, height adjustable|color",
    ]),
    "tools": ("Tools & Home Improvement", "professional grade, heavy duty, with carrying case", [
        "Power Tools|Cordless Drill|40-200|brushless motor, with 2 batteries, variable speed, "
        "led work light, keyless chuck|color style=voltage",
        "Hand Tools|Screwdriver Set|10-60|magnetic tips, precision bits, ratcheting, insulated "
        "handles, 42 piece|count",
        "Measuring|Tape Measure|8-30|25 foot, magnetic hook, auto lock, fractional markings, "
        "belt clip|color",
        "Lighting|LED Flashlight|10-50|rechargeable, zoomable, 1000 lumens, ipx6 waterproof, "
        "tactical|color count",
        "Safety|Work Gloves|8-30|cut resistant, touchscreen compatible, nitrile coated, "
        "insulated, grip dots|color size=apparel",
        "Storage|Tool Box|20-120|with removable tray, metal latches, rolling wheels, stackable,"
        " lockable|color",
    ]),
    "automotive": ("Automotive", "universal fit, easy install, all weather", [
        "Interior|Car Phone Mount|10-40|magnetic, dashboard mount, air vent clip, one hand "
        "operation, 360 degree rotation|color",
        "Interior|Seat Covers|25-120|waterproof, full set, airbag compatible, breathable, faux "
        "leather|color",
        "Interior|Floor Mats|25-120|custom fit, rubber, trimmable, odorless, deep "
        "channels|color",
        "Tools|Tire Inflator|25-90|cordless, digital pressure gauge, auto shut off, 12v plug, "
        "with led light|color",
        "Care|Car Wax|8-35|ceramic coating, spray on, high gloss, hydrophobic, paint "
        "safe|size=floz",
        "Electronics|Dash Cam|40-200|4k video, night vision, loop recording, g sensor, front "
        "and rear|color",
    ]),
    "health": ("Health & Household", "third party tested, non gmo, made in usa", [
        "Vitamins|Vitamin D3|6-30|5000 iu, softgels, with vitamin k2, easy to swallow, gluten "
        "free|size=pills",
        "Supplements|Fish Oil|10-45|omega 3, burpless, enteric coated, wild caught, lemon "
        "flavored|size=pills",
        "Nutrition|Protein Powder|20-70|whey isolate, plant based, no added sugar, keto "
        "friendly, 25g protein per serving|flavor size=ounce",
        "Personal Care|Hand Sanitizer|4-25|kills 99.9 percent of germs, with aloe, travel size,"
        " fragrance free, gel formula|scent size=floz count",
        "Oral Care|Electric Toothbrush|25-150|with 4 brush heads, pressure sensor, 2 minute "
        "timer, rechargeable, travel case|color",
        "Vitamins|Multivitamin|8-40|for women, for adults 50 plus, gummies, with iron, once "
        "daily|size=pills",
    ]),
    "baby": ("Baby", "hypoallergenic, bpa free, pediatrician recommended", [
        "Diapering|Baby Wipes|8-40|fragrance free, 99 percent water, plant based, thick, flip "
        "top lid|size=wipes",
        "Diapering|Diapers|20-70|overnight protection, wetness indicator, chlorine free, extra "
        "absorbent, leak guards|size=diaper",
        "Feeding|Baby Bottles|12-50|anti colic, slow flow nipple, glass, easy to hold, wide "
        "neck|count color",
        "Nursery|Swaddle Blanket|15-50|muslin cotton, breathable, adjustable wings, "
        "zipper|color pattern count",
        "Feeding|Teether|6-20|food grade silicone, freezer safe, easy grip, for molars|color "
        "count",
        "Gear|Baby Carrier|30-150|ergonomic, hip seat, 4 carrying positions, lumbar support, "
        "for newborns|color",
    ]),
    "jewelry": ("Jewelry", "nickel free, hypoallergenic, gift box included", [
        "Necklaces|Pendant Necklace|15-150|925 sterling, tarnish resistant, with birthstone, "
        "dainty, adjustable chain|color=metal",
        "Earrings|Stud Earrings|10-120|cubic zirconia, 925 sterling, screw back, tiny, for "
        "sensitive ears|color=metal",
        "Bracelets|Charm Bracelet|15-100|adjustable, stackable, beaded, engravable, stainless "
        "steel|color=metal",
        "Rings|Engagement Ring|80-600|solitaire, moissanite, halo setting, conflict free, lab "
        "created|color=metal size=ring",
        "Watches|Wrist Watch|40-300|water resistant, leather strap, quartz movement, sapphire "
        "crystal, minimalist dial|color",
    ]),
    "books": ("Books", "bestseller, illustrated, large print", [
        "Cooking|Cookbook|12-40|vegetarian recipes, for beginners, quick meals, meal prep, air "
        "fryer|size=format",
        "Fiction|Mystery Novel|8-30|page turner, first in series, award winning, "
        "standalone|size=format",
        "Children|Picture Book|6-22|rhyming text, bedtime story, for toddlers, lift the "
        "flap|size=format",
        "Hobbies|Coloring Book|6-18|for adults, stress relief, single sided pages, mandala "
        "designs|size=format",
        "Self Help|Guided Journal|10-30|with prompts, gratitude practice, undated, lay flat "
        "binding|color size=format",
    ]),
    "musical instruments": ("Musical Instruments", "for beginners, with gig bag, tuned", [
        "Guitars|Acoustic Guitar|80-500|solid spruce top, cutaway, full size, with built in "
        "tuner, dreadnought body|color",
        "Accessories|Guitar Strings|5-25|phosphor bronze, coated, nickel wound, long lasting "
        "tone|size=gauge count",
        "Ukuleles|Ukulele|30-150|soprano, concert, mahogany body, with aquila strings|color",
        "Keyboards|Digital Piano|150-700|88 weighted keys, with stand, usb midi, sustain pedal "
        "included|color",
        "Percussion|Drum Sticks|6-25|hickory wood, nylon tip, anti slip grip, 5a|count",
        "Recording|Microphone|30-250|usb, cardioid, with pop filter, condenser, xlr "
        "output|color",
    ]),
    "outdoor": ("Outdoor Recreation", "water repellent, ultralight, packable", [
        "Camping|Camping Tent|50-350|instant setup, with rainfly, 3 season, light blocking, with "
        "vestibule|color size=tent",
        "Camping|Sleeping Bag|30-200|rated to 20 degrees, mummy shape, with compression sack, "
        "down fill, for kids|color",
        "Camping|Camping Chair|25-120|with cup holder, folding, high back, rocking, with side "
        "table|color",
        "Lighting|Headlamp|10-50|rechargeable, night vision mode, motion sensor, 500 lumens, "
        "waterproof ipx4|color count",
        "Lighting|Camping Lantern|15-60|battery operated, collapsible, with hook, dimmable, "
        "solar charging|color count",
    ]),
    "bags & luggage": ("Luggage & Bags", "water resistant, lightweight, with lifetime warranty", [
        "Luggage|Hardside Suitcase|60-350|spinner wheels, tsa lock, expandable, polycarbonate "
        "shell, with usb port|color size=luggage",
        "Backpacks|Laptop Backpack|25-120|fits 15.6 inch laptop, anti theft, with usb charging "
        "port, padded straps, luggage strap|color",
        "Handbags|Tote Bag|15-90|with zipper, vegan leather, canvas, with inner pockets, "
        "oversized|color",
        "Travel|Duffel Bag|25-120|with shoe compartment, foldable, wet pocket, detachable "
        "strap|color",
        "Handbags|Crossbody Bag|15-80|adjustable strap, rfid blocking, multiple compartments, "
        "small size|color",
        "Accessories|Wallet|12-80|rfid blocking, bifold, genuine leather, slim design, with "
        "coin pocket|color",
    ]),
    "arts & crafts": ("Arts, Crafts & Sewing", "non toxic, acid free, artist grade", [
        "Painting|Acrylic Paint Set|10-50|with brushes, vibrant colors, quick drying, for "
        "canvas, metallic shades|count",
        "Drawing|Sketchbook|8-30|spiral bound, heavyweight paper, perforated pages, mixed "
        "media|count size=format",
        "Knitting|Yarn|5-40|soft acrylic, merino wool, for crochet, chenille, ombre|color "
        "size=weight",
        "Painting|Paint Brushes|8-30|synthetic bristles, with case, for watercolor, for oil "
        "painting, flat and round|count",
        "Drawing|Colored Pencils|8-45|soft core, oil based, pre sharpened, blendable, with tin "
        "box|count",
        "Crafts|Hot Glue Gun|10-35|dual temperature, with glue sticks, cordless, precision "
        "nozzle|color",
    ]),
}
# fmt: on
# fmt: on

# The ood split's categories, in the same format: every word of their names and attributes is
# absent from the embedded products' text (option values are shared shop vocabulary).
# fmt: off
OOD_CATEGORIES: dict[str, tuple[str, str, list[str]]] = {
    "astronomy": ("Astronomy & Stargazing", "nitrogen purged, fogproof, multicoated optics", [
        "Telescopes|Refractor Telescope|90-600|apochromatic, achromat doublet, equatorial "
        "tripod, computerized goto, with finderscope, dovetail saddle|size=aperture",
        "Telescopes|Dobsonian Telescope|200-900|parabolic primary, truss struts, newtonian "
        "optics, altazimuth rocker, with collimation laser, crayford focuser|size=aperture",
        "Binoculars|Binoculars|40-400|porro prisms, bak4 prisms, gyro stabilized, dielectric "
        "multilayer, tripod adaptable, with lanyard|size=magnification color",
        "Eyepieces|Telescope Eyepiece|20-200|plossl optics, barlow ready, twist eyecups, "
        "generous eyerelief, panoptic apparent fov|size=eyepiece count",
        "Charts|Planisphere|8-40|revolving celestial disc, latitude specific, luminous ink, "
        "laminated vinyl, constellation outlines|size=latitude count",
    ]),
    "homebrewing": ("Homebrewing & Winemaking", "sanitizable, homebrewer endorsed, vintner "
                    "favored", [
        "Fermentation|Fermenter|20-160|conical sump, with spigot, graduated gallons scale, "
        "airtight gasket, krausen headspace|size=capacity count",
        "Fermentation|Carboy|25-90|borosilicate, polyethylene, with bung, fluted exterior, "
        "demijohn silhouette|size=capacity style=closure",
        "Hydrometry|Hydrometer|6-30|triple scale, thermometer bundled, with sampling jar, "
        "specific gravity, potential alcohol|count style=brew",
        "Brewhouse|Wort Chiller|40-180|coiled piping, immersion chilling, counterflow layout, "
        "faucet adapter, recirculating whirlpool|size=coil color=metal",
        "Capping|Capper|15-70|benchtop, lever action, crown caps, bell cappers, zinc "
        "alloy|count",
    ]),
}
# fmt: on

BRAND_STARTS = (
    "Ver Lum Aur Nov Kest Bri Sol Mar Tav Zen Pel Quin Ros Hal Ard Cor Fen Gal Ily Jor".split()
)
BRAND_ENDS = "ora ix ano era ly wick field ton via mont ella aro ex ist oni ium".split()
ADJECTIVES = (
    "Premium Everyday Essential Signature Deluxe Select Prime Elite Superior Heritage".split()
)
OOD_BRAND_STARTS = "Quasar Zephyr Orbi Nebu Vortu Xandr Yggr Plov Thrask Wubb Drazz Kroll".split()
OOD_BRAND_ENDS = "ix ax oq un yth ek uz ov".split()
OOD_ADJECTIVES = (
    "Stellar Astute Lustrous Paragon Vaunted Lauded Venerable Intrepid Peerless Stalwart".split()
)
BULLET_TEXTS = [
    "Every {type} from {brand} is checked by hand before it ships.",
    "A favourite of {brand} customers, chosen for everyday use.",
    "Backed by the {brand} satisfaction promise and friendly support.",
    "Designed in house by the {brand} team and improved over many versions.",
    "Simple to use straight out of the box, no extra parts needed.",
    "A thoughtful gift for family, friends and colleagues.",
    "Packed in a recyclable box that keeps it safe in transit.",
]
CLOSINGS = [
    "Order today and see why so many shoppers come back to {brand}.",
    "It is an upgrade that you will notice every day.",
    "Add it to your cart and enjoy it for years to come.",
]
REVIEWS = {  # score -> (titles, bodies)
    5: (
        ["Love it", "Exactly what I wanted", "Five stars"],
        [
            "Works perfectly and arrived quickly. Would buy this {type} again.",
            "Great value for the money, my second one from {brand}.",
        ],
    ),
    4: (
        ["Very good", "Happy with it", "Good choice"],
        [
            "Does the job well. Only a minor quibble with the packaging.",
            "Good {type}, a little different from the photos but still nice.",
        ],
    ),
    3: (
        ["It is okay", "Average", "Mixed feelings"],
        ["Fine for the price, nothing special.", "Decent {type}, but I expected more."],
    ),
    2: (
        ["Disappointed", "Not great"],
        ["It stopped working as well after a few weeks.", "Not what I hoped for."],
    ),
    1: (
        ["Returned it", "Would not buy again"],
        ["Arrived damaged and the replacement was no better.", "Did not meet my needs."],
    ),
}
REVIEW_SCORES, REVIEW_WEIGHTS = [5, 4, 3, 2, 1], [45, 30, 12, 7, 6]


# ---------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------


class ProductType:
    """A product type: query, breadcrumb, attribute pool, option dimensions, price band, and
    the brands and adjectives its titles draw from."""

    def __init__(
        self,
        category: str,
        root: str,
        shared: list[str],
        spec: str,
        *,
        brand_starts: list[str] = BRAND_STARTS,
        brand_ends: list[str] = BRAND_ENDS,
        adjectives: list[str] = ADJECTIVES,
    ) -> None:
        sub, self.title, band, attrs, dims = spec.split("|")
        self.category = category
        self.query = self.title.lower()
        self.breadcrumb = f" {CATEGORY_SEPARATOR} ".join((root, sub, self.title))
        low, high = band.split("-")
        self.price_band = (float(low), float(high))
        self.attributes = [a.strip() for a in attrs.split(",")] + shared
        self.dims = [(d.split("=")[0], OPTION_VALUES[d.split("=")[-1]]) for d in dims.split()]
        brand_rng = random.Random(f"brands:{category}")
        self.brands = [
            s + e
            for s, e in zip(
                brand_rng.sample(brand_starts, 6), brand_rng.sample(brand_ends, 6), strict=True
            )
        ]
        self.adjectives = adjectives


PRODUCT_TYPES: list[ProductType] = [
    ProductType(category, root, [a.strip() for a in shared.split(",")], spec)
    for category, (root, shared, specs) in CATEGORIES.items()
    for spec in specs
]
OOD_PRODUCT_TYPES: list[ProductType] = [
    ProductType(
        category,
        root,
        [a.strip() for a in shared.split(",")],
        spec,
        brand_starts=OOD_BRAND_STARTS,
        brand_ends=OOD_BRAND_ENDS,
        adjectives=OOD_ADJECTIVES,
    )
    for category, (root, shared, specs) in OOD_CATEGORIES.items()
    for spec in specs
]
# Chance that a family's attribute is named in the family's listing copy (title, first bullet,
# description), shared by its siblings; a sibling's own, different attribute is named with the
# smaller chance, as variants on a shop page share one copy and differ in the details.
SHOWN_SHARE = 0.4
NEW_SHOWN_SHARE = 0.25
_B36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _asin(rng: random.Random, taken: set[str]) -> str:
    while True:
        asin = "B0" + "".join(rng.choices(_B36, k=8))
        if asin not in taken:
            taken.add(asin)
            return asin


def _price(rng: random.Random, low: float, high: float) -> float:
    return round(int(rng.uniform(low, high)) + rng.choice((0.99, 0.49, 0.95, 0.0)), 2)


def _options(rng: random.Random, ptype: ProductType) -> dict[str, list[str]]:
    options = {}
    for dim, values in ptype.dims:
        if rng.random() < 0.1:  # this family does not offer the type's dimension
            continue
        chosen = set(
            rng.sample(values, rng.randint(min(2, len(values)), min(5, len(values) // 2 + 1)))
        )
        options[dim] = [v for v in values if v in chosen]  # keep the list's natural order
    return options


def _tweak_options(rng: random.Random, ptype: ProductType, options: dict) -> dict:
    """The family's options with one value added to or dropped from one dimension."""
    options = {dim: list(values) for dim, values in options.items()}
    if not options:
        return options
    dim = rng.choice(sorted(options))
    pool = dict(ptype.dims)[dim]
    missing = [v for v in pool if v not in options[dim]]
    if missing and (len(options[dim]) <= 2 or rng.random() < 0.5):
        added = set(options[dim]) | {rng.choice(missing)}
        options[dim] = [v for v in pool if v in added]
    elif len(options[dim]) > 2:
        options[dim].remove(rng.choice(options[dim]))
    return options


def _family_base(rng: random.Random, ptype: ProductType) -> dict:
    pool = ptype.attributes
    attributes = rng.sample(pool, min(len(pool), rng.choice((3, 3, 4, 4, 5, 6))))
    shown = [a for a in attributes if rng.random() < SHOWN_SHARE]
    return {
        "brand": rng.choice(ptype.brands),
        "adjective": rng.choice(ptype.adjectives),
        "attributes": attributes,
        "shown": shown,  # the attributes the family's listing copy names
        "in_title": shown[: rng.choice((0, 1, 1, 2))],
        "options": _options(rng, ptype),
        "price": _price(rng, *ptype.price_band),
    }


def _variant(rng: random.Random, ptype: ProductType, base: dict) -> dict:
    """A sibling of the family base: the same option dimensions and (mostly) values, a near-
    identical title, a nearby price, but one or two different attributes."""
    variant = {**base, "attributes": list(base["attributes"]), "options": base["options"]}
    for _ in range(rng.choice((1, 1, 2))):
        missing = [a for a in ptype.attributes if a not in variant["attributes"]]
        slot = rng.randrange(len(variant["attributes"]))
        if missing and (len(variant["attributes"]) <= 3 or rng.random() < 0.75):
            variant["attributes"][slot] = rng.choice(missing)
        else:
            del variant["attributes"][slot]
    kept = set(variant["attributes"])
    new = [a for a in variant["attributes"] if a not in base["attributes"]]
    variant["shown"] = [a for a in base["shown"] if a in kept]
    variant["shown"] += [a for a in new if rng.random() < NEW_SHOWN_SHARE]
    variant["in_title"] = [a for a in base["in_title"] if a in kept]
    if rng.random() < 0.2:
        variant["options"] = _tweak_options(rng, ptype, base["options"])
    variant["price"] = _price(rng, max(1.0, base["price"] * 0.7), base["price"] * 1.5 + 1)
    if rng.random() < 0.15:
        variant["brand"] = rng.choice(ptype.brands)
    return variant


def _make_product(rng: random.Random, ptype: ProductType, spec: dict, asin: str) -> Product:
    brand, attrs = spec["brand"], spec["attributes"]
    # The "shown" attributes are named in the title, the first bullet and the description
    # (what the search index sees); the rest are only in the Attributes list and the later
    # bullet points, so only the item page tells whether the product has them.
    shown, in_title = spec["shown"], spec["in_title"]
    feature = "".join(f" {a.title()}" for a in in_title if a.startswith("with "))
    rest = ", ".join(a.title() for a in in_title if not a.startswith("with "))
    name = f"{brand} {spec['adjective']} {ptype.title}{feature}" + (f", {rest}" if rest else "")
    price = spec["price"]
    pricing = [price] if rng.random() < 0.8 else [price, round(price * rng.uniform(1.15, 1.9), 2)]
    fill = {"type": ptype.query, "brand": brand}
    first = [a for a in shown if a not in in_title][:1] or shown[:1]
    later = [a for a in attrs if a not in first][: 5 - len(first)]
    bullets = [f"{a.upper()}: {rng.choice(BULLET_TEXTS).format(**fill)}" for a in first + later]
    if not first:  # the first bullet (indexed) then names no attribute
        bullets.insert(0, rng.choice(BULLET_TEXTS).format(**fill))
    while len(bullets) < 3:
        bullets.append(rng.choice(BULLET_TEXTS).format(**fill))
    bullets = bullets[:5]
    about = f": {', '.join(shown)}." if shown else "."
    description = (
        f"Meet the {brand} {spec['adjective'].lower()} {ptype.query}{about} "
        + rng.choice(BULLET_TEXTS).format(**fill)
        + " "
        + rng.choice(CLOSINGS).format(**fill)
    )
    reviews = []
    for _ in range(rng.choice((0, 0, 1, 2, 3, 4, 5))):
        score = rng.choices(REVIEW_SCORES, REVIEW_WEIGHTS)[0]
        titles, bodies = REVIEWS[score]
        body = rng.choice(bodies).format(**fill)
        reviews.append({"title": rng.choice(titles), "score": score, "body": body})
    rating = round(sum(r["score"] for r in reviews) / len(reviews), 1) if reviews else "N.A."
    return {
        "asin": asin,
        "name": name,
        "Title": name,
        "category": ptype.category,
        "product_category": ptype.breadcrumb,
        "query": ptype.query,
        "pricing": pricing,
        "Price": price_tag(pricing),
        "options": {dim: list(values) for dim, values in spec["options"].items()},
        "Attributes": list(attrs),
        "BulletPoints": bullets,
        "Description": description,
        "Reviews": reviews,
        "Rating": rating,
        "MainImage": None,
    }


def generate_products(n: int = 10_000, seed: int = 0) -> list[Product]:
    """``n`` products, spread evenly over the product types, in families of 2-6 siblings.

    Deterministic in (n, seed). Products are listed type by type, family by family.
    """
    n_types = len(PRODUCT_TYPES)
    counts = [n // n_types + (1 if index < n % n_types else 0) for index in range(n_types)]
    return _generate(random.Random(seed), PRODUCT_TYPES, counts, set())


def generate_ood_products(
    per_type: int = 69, seed: int = 0, exclude_asins: Iterable[str] = ()
) -> list[Product]:
    """``per_type`` products of each of ``OOD_PRODUCT_TYPES``, made as ``generate_products``
    makes its own (the default 69 is the embedded catalog's density: 10,000 over 145 types),
    with asins outside ``exclude_asins`` (the catalog's other products). Deterministic in the
    arguments; drawn from an rng stream of their own, so they never change the others."""
    counts = [per_type] * len(OOD_PRODUCT_TYPES)
    return _generate(
        random.Random(f"webgym-ood:{seed}"), OOD_PRODUCT_TYPES, counts, set(exclude_asins)
    )


def _generate(
    rng: random.Random, types: list[ProductType], counts: list[int], taken: set[str]
) -> list[Product]:
    products: list[Product] = []
    for ptype, count in zip(types, counts, strict=True):
        remaining = count
        while remaining > 0:
            base = _family_base(rng, ptype)
            size = min(remaining, rng.randint(2, 6))
            for member in range(size):
                spec = base if member == 0 else _variant(rng, ptype, base)
                products.append(_make_product(rng, ptype, spec, _asin(rng, taken)))
            remaining -= size
    return products
