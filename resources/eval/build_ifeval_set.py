"""Build the held-out instruction-following set, resources/eval/helpful.jsonl (deterministic, seed 42).

    python resources/eval/build_ifeval_set.py            # rewrites resources/eval/helpful.jsonl
    python resources/eval/build_ifeval_set.py --check    # exits 1 if the committed file differs

The file holds the hand-written prompts (ids ``h-*``, kept as they are) followed by generated ones (ids
``if-*``): each base task below, written for this project (CC0-1.0), with one IFEval constraint, and with
probability 1/4 a second compatible one, attached in IFEval's own words with its checker kwargs
(``maximalcai.verifiable.attach``). Every instruction type that ``if-verifiable`` can check appears
``PER_TYPE`` times as the first constraint, round-robin, so any first N generated prompts (the CPU
default's ``evaluation.max_prompts`` cut) spread over the types. The base tasks cover writing,
explanation, advice, coding, math and summarising; ``tests/test_resources.py`` checks that no prompt is a
near-duplicate of any few-shot pool or demonstration file, and the workflow drops generated training
instructions that come close to any eval prompt.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "src"))

from maximalcai import verifiable  # noqa: E402

SEED = 42
PER_TYPE = 12
SECOND_SHARE = 0.25
OUT = HERE / "helpful.jsonl"

BASE_TASKS: dict[str, list[str]] = {
    "writing": [
        "Write a short poem about an old lighthouse keeper.",
        "Write a limerick about a cat who learns to play the piano.",
        "Write the opening paragraph of a mystery story set in a library.",
        "Write a short speech welcoming new volunteers to a food bank.",
        "Write a text message apologizing to a friend for missing their party.",
        "Write a product description for a solar-powered lantern.",
        "Write a short letter to your future self to open in ten years.",
        "Write a toast for a best friend's wedding.",
        "Write a short fable about a tortoise who wants to fly.",
        "Write an email asking a professor for an extension on an essay.",
        "Write a short dialogue between a barista and a sleepy customer.",
        "Write a job advertisement for a part-time dog walker.",
        "Write a motivational note for a student before a big exam.",
        "Write a short review of an imaginary restaurant that only serves soup.",
        "Describe the smell of a forest after the rain.",
        "Write a riddle whose answer is a shadow.",
    ],
    "explanation": [
        "Explain how a refrigerator keeps food cold.",
        "Explain why the moon has phases.",
        "Explain what inflation means for everyday shoppers.",
        "Explain how bees make honey.",
        "Explain the difference between a virus and a computer worm.",
        "Explain why ice floats on water.",
        "Explain how a vaccine differs from an antibiotic.",
        "Explain what a black hole is.",
        "Explain how tides are caused.",
        "Explain why some people are left-handed.",
        "Explain how a bill becomes a law in a parliament, in simple terms.",
        "Explain what the internet cloud actually is.",
        "Explain why bread rises when it is baked.",
        "Explain how rainbows form.",
        "Explain what an earthquake is and why it happens.",
        "Explain the water cycle to a ten-year-old.",
    ],
    "advice": [
        "Give advice to someone who wants to learn to play the guitar as an adult.",
        "Give advice on keeping houseplants alive in a dark apartment.",
        "Suggest ways to make a long car journey with children more pleasant.",
        "Give advice to someone moving to a new city where they know nobody.",
        "Suggest how to stay productive when working from home.",
        "Give advice on choosing a first pair of running shoes.",
        "Suggest ways to reduce plastic waste in the kitchen.",
        "Give advice to a student writing their first research paper.",
        "Suggest how to prepare for a long hike in hot weather.",
        "Give advice on how to keep a conversation going on a first date.",
        "Suggest ways to make a small bedroom feel bigger.",
        "Give advice to someone who wants to start journaling.",
        "Suggest how to teach a dog to walk on a leash.",
        "Give advice on saving for a holiday abroad.",
        "Suggest ways to remember people's names at a party.",
        "Give advice to someone nervous about speaking in public.",
    ],
    "coding": [
        "Describe how to write a Python function that counts the vowels in a string.",
        "Explain what a for loop does in programming.",
        "Describe how to read a CSV file in Python.",
        "Explain the difference between a list and a tuple in Python.",
        "Explain what an HTTP status code of 404 means.",
        "Describe how to write a SQL query that finds the ten most recent orders.",
        "Explain what recursion is, with a small example.",
        "Explain what a variable is to someone who has never programmed.",
        "Describe how to remove duplicate items from a list in Python.",
        "Explain what unit tests are and why developers write them.",
        "Explain the difference between a compiler and an interpreter.",
        "Describe how to center a div element with CSS.",
        "Explain what a hash table is used for.",
        "Explain what an infinite loop is and how to avoid one.",
        "Describe how to check whether a number is even in JavaScript.",
        "Explain what version control is useful for.",
    ],
    "math": [
        "A recipe needs 3 eggs for 12 cookies. How many eggs are needed for 36 cookies?",
        "What is 15 percent of 240?",
        "A rectangle is 8 meters long and 5 meters wide. What is its area?",
        "If I save 25 dollars a week, how many weeks will it take to save 600 dollars?",
        "What is the sum of the angles in a triangle, and why?",
        "A car uses 6 liters of fuel per 100 kilometers. How much fuel does it need for 350 kilometers?",
        "Explain how to find the average of the numbers 4, 8, 15 and 21.",
        "What is the next number in the sequence 2, 6, 18, 54?",
        "How many minutes are there in three and a half hours?",
        "A jacket costs 80 dollars after a 20 percent discount. What was the original price?",
        "Explain what a prime number is and give two examples.",
        "If a pizza is cut into 8 slices and I eat 3, what fraction is left?",
        "What is the perimeter of a square with sides of 7 centimeters?",
        "Explain how to convert a fraction into a percentage.",
        "A train leaves at 9:40 and arrives at 13:15. How long is the journey?",
        "What is the square root of 144, and how can you check it?",
    ],
    "summarising": [
        "Summarize this passage: The town library will close for two weeks in March so that workers can "
        "replace the roof and install new lighting. During the closure, books can be returned to a drop box "
        "at the town hall, and the children's reading club will meet at the community center instead.",
        "Summarize this passage: Researchers tracked five hundred commuters for a year and found that those "
        "who cycled to work took fewer sick days than those who drove. The effect was strongest in winter, "
        "which surprised the team, who had expected cold weather to cancel out the benefits.",
        "Summarize this passage: The bakery on Elm Street has changed its opening hours. It now opens at six "
        "in the morning on weekdays, an hour earlier than before, but it closes at two in the afternoon and "
        "stays closed on Mondays so the staff can rest.",
        "Summarize this passage: A new study of city parks found that areas with more trees were up to four "
        "degrees cooler on summer afternoons. The authors suggest that planting trees along busy streets "
        "could protect older residents during heat waves.",
        "Summarize this passage: The school board approved a plan to start classes thirty minutes later next "
        "year. Supporters say teenagers will get more sleep, while some parents worry about how the change "
        "will affect after-school jobs and sports practice.",
        "Summarize this passage: Volunteers collected more than two tons of litter from the river banks last "
        "weekend. Most of it was plastic bottles and food wrappers, and the organizers plan to hold the "
        "clean-up every spring from now on.",
        "Summarize this passage: The museum's new exhibition shows everyday objects from two hundred years "
        "ago, such as kitchen tools, toys and letters. Visitors can handle copies of some items, and the "
        "exhibition will travel to three other cities next year.",
        "Summarize this passage: After months of testing, the company released an update to its phone app "
        "that makes it work without an internet connection. Users can now save maps and timetables and "
        "view them later, which was the feature most requested in surveys.",
        "Summarize this passage: Farmers in the valley have started planting a drought-resistant variety of "
        "wheat. It produces slightly less grain in wet years, but in dry years it gives almost twice the "
        "harvest of the old variety, so most farmers think the trade is worth it.",
        "Summarize this passage: The city is testing electric buses on two routes. Drivers say the buses are "
        "quieter and smoother, but the batteries need recharging at lunchtime, so the city is building "
        "charging points at both ends of each route.",
        "Summarize this passage: A local choir that started with six members now has over sixty. It meets on "
        "Thursday evenings, welcomes singers of every level, and will perform its first concert in the town "
        "square in June.",
        "Summarize this passage: The hospital has opened a new wing for children, with brighter rooms, a "
        "playroom and beds for parents who want to stay overnight. The project was paid for partly by a "
        "fundraising campaign run by former patients.",
        "Summarize the plot of the story of Cinderella.",
        "Summarize the main idea of the saying that practice makes perfect.",
        "Summarize what happens during a typical visit to the dentist.",
        "Summarize the rules of the game tic-tac-toe.",
    ],
}
# Yes/no questions for IFEval's constrained response ("My answer is yes." / no / maybe).
YES_NO_TASKS = [
    "Is it a good idea to drink water before feeling thirsty?",
    "Can penguins fly?",
    "Should a beginner learn to cook with simple recipes first?",
    "Is the sun a star?",
    "Is it safe to look directly at the sun during an eclipse?",
    "Can a person learn a new language after the age of fifty?",
    "Is a tomato a fruit?",
    "Should you back up important files on your computer?",
    "Do all birds lay eggs?",
    "Is it possible to run a marathon without training?",
    "Does reading before bed help people fall asleep?",
    "Is chess a sport?",
]


def build(handwritten: list[dict]) -> list[dict]:
    rng = random.Random(SEED)
    tasks = [(category, task) for category, items in BASE_TASKS.items() for task in items]
    rows = list(handwritten)
    generated = []
    cursor = {"tasks": 0, "yes_no": 0}
    order = list(tasks)
    rng.shuffle(order)
    yes_no = list(YES_NO_TASKS)
    rng.shuffle(yes_no)
    for _ in range(PER_TYPE):  # round-robin over the types, so that any first N prompts cover them all
        for instruction_id in verifiable.constraint_types():
            if instruction_id == verifiable.YES_NO:
                category, task = "yes_no", yes_no[cursor["yes_no"] % len(yes_no)]
                cursor["yes_no"] += 1
            else:
                category, task = order[cursor["tasks"] % len(order)]
                cursor["tasks"] += 1
            row = verifiable.attach(task, instruction_id, rng, SECOND_SHARE)
            generated.append({"category": category, "task": task, **row})
    for index, row in enumerate(generated, start=1):
        rows.append(
            {
                "id": f"if-{index:03d}",
                "prompt": row["prompt"],
                "instruction_id_list": row["instruction_id_list"],
                "kwargs": row["kwargs"],
                "category": row["category"],
                "task": row["task"],
            }
        )
    return rows


def render(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if the committed file is not what this builds")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    existing = [json.loads(line) for line in OUT.read_text().splitlines() if line.strip()]
    text = render(build([row for row in existing if row["id"].startswith("h-")]))
    if args.check:
        if args.out.read_text() != text:
            print(f"{args.out} is not what {Path(__file__).name} builds; run it to rewrite the file", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out}: {text.count(chr(10))} prompts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
