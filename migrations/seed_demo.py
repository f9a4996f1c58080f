"""The seed tutorial's demo, with its definitions replaced by imports from ``models``.

Everything below ``main()``'s first two lines is the tutorial's code, unchanged: it adds
Alice (Mathematics, History) and Bob (Mathematics), commits, and prints the roster by
lazy-loading each student's courses (N+1; see models/queries.py for the fast path).
The schema comes from migrations, not ``create_all``: run it on a database migrated to
the schema revision and not yet seeded, or it adds a second Alice and Bob.
"""

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from migrations.database import ensure_database_url
from models import Course, Student


def main() -> None:
    engine = create_engine(ensure_database_url())

    Session = sessionmaker(bind=engine)  # noqa: N806 - the tutorial's name
    session = Session()

    # Пример добавления данных:
    student1 = Student(name="Alice")
    student2 = Student(name="Bob")
    course1 = Course(title="Mathematics")
    course2 = Course(title="History")

    # Связываем студентов и курсы
    student1.courses.append(course1)
    student1.courses.append(course2)
    student2.courses.append(course1)

    session.add_all([student1, student2, course1, course2])
    session.commit()

    # Запрос и вывод данных:
    for student in session.query(Student).all():
        print(f"Student: {student.name}")
        for course in student.courses:
            print(f"  Course: {course.title}")


if __name__ == "__main__":
    main()
