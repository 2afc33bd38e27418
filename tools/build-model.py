#!/usr/bin/env python3
"""Builds src/model/ats-model.json, the project's one copy of the ATS data model.

Run once by hand when the shared model changes:

    python3 tools/build-model.py ../shared/ats-api/entities.json > src/model/ats-model.json

It keeps the facts the code needs from the transcribed Microsoft docs (entities, properties,
flags, lookups, option sets, GraphQL names) and adds what the docs leave out but the emulator and
gateway need, each marked as ours:

* `fnoEntity`: the PascalCase F&O data-entity name, used for navigation-property names
  (`mshr_FK_<FnoEntity>_<Relation>`), following the six documented names.
* per relation: the navigation property name and, for lookups, the readable key on the parent
  that the child's readable key refers to (how the emulator resolves `mshr_partynumber` etc.).
* `primaryFieldParts`: the properties joined by " | " into `mshr_primaryfield`.
* `sequences`: number-sequence formats for system-assigned readable IDs.
* per property, `samples`: realistic values for the emulator's demo seed (see SAMPLE_GROUPS).
"""
import json
import sys

FNO = {
    "mshr_hcmrecruitingrequestentity": "HcmRecruitingRequestEntity",
    "mshr_hcmrecruitingrequestpositionentity": "HcmRecruitingRequestPositionEntity",
    "mshr_hcmrecruitingrequestskillentity": "HcmRecruitingRequestSkillEntity",
    "mshr_hcmrecruitingrequesteducationentity": "HcmRecruitingRequestEducationEntity",
    "mshr_hcmrecruitingrequestlocationentity": "HcmRecruitingRequestLocationEntity",
    "mshr_hcmcandidatetohireentity": "HcmCandidateToHireEntity",
    "mshr_dirpersonentity": "DirPersonEntity",
    "mshr_hcmpersoneducationentity": "HcmPersonEducationEntity",
    "mshr_hcmpersonprofessionalexperienceentity": "HcmPersonProfessionalExperienceEntity",
    "mshr_hcmpersonaddressentity": "HcmPersonAddressEntity",
    "mshr_dirpartycontactentity": "DirPartyContactEntity",
    "mshr_hcmpersonskillentity": "HcmPersonSkillEntity",
    "mshr_hcmratinglevelentity": "HcmRatingLevelEntity",
    "mshr_hcmpersoncertificateentity": "HcmPersonCertificateEntity",
    "mshr_hcmcertificatetypeentity": "HcmCertificateTypeEntity",
    "mshr_hcmpersonscreeningentity": "HcmPersonScreeningEntity",
    "mshr_hcmscreeningtypeentity": "HcmScreeningTypeEntity",
    "mshr_hcmpersonidentificationnumberentity": "HcmPersonIdentificationNumberEntity",
}

# lookup attribute middle part -> PascalCase relation name (mshr_fk_<x>_id -> mshr_FK_<X>_id)
RELATION = {
    "person": "Person",
    "recruitingrequest": "RecruitingRequest",
    "recruitingrequestlocation": "RecruitingRequestLocation",
    "recruiter": "Recruiter",
    "ratinglevel": "RatingLevel",
    "certificatetype": "CertificateType",
    "screeningtype": "ScreeningType",
}

# readable key on the parent that a child's readable key holds, where the names differ
PARENT_KEY = {
    ("mshr_hcmrecruitingrequestentity", "mshr_recruiterpartynumber"): "mshr_partynumber",
    ("mshr_hcmpersonskillentity", "mshr_levelid"): "mshr_ratinglevelid",
    ("mshr_hcmpersoncertificateentity", "mshr_certificatetypeid"): "mshr_certificatetype",
}

PRIMARY_FIELD = {
    "mshr_hcmrecruitingrequestpositionentity": ["mshr_recruitingrequestid", "mshr_positionid"],
    "mshr_hcmrecruitingrequestskillentity": ["mshr_recruitingrequestid", "mshr_skillid"],
    "mshr_hcmrecruitingrequesteducationentity": ["mshr_recruitingrequestid", "mshr_educationlevelid", "mshr_educationdisciplineid"],
    "mshr_hcmpersoneducationentity": ["mshr_partynumber", "mshr_educationdisciplineid", "mshr_educationinstitutionid", "mshr_educationlevelid"],
    "mshr_hcmpersonprofessionalexperienceentity": ["mshr_partynumber", "mshr_startdate", "mshr_employerposition", "mshr_employername"],
    "mshr_hcmpersonaddressentity": ["mshr_partynumber", "mshr_locationid"],
    "mshr_dirpartycontactentity": ["mshr_partynumber", "mshr_type", "mshr_description", "mshr_locator"],
    "mshr_hcmpersonskillentity": ["mshr_partynumber", "mshr_leveltype", "mshr_skillid", "mshr_leveldate"],
    "mshr_hcmratinglevelentity": ["mshr_ratinglevelid", "mshr_ratingmodelid"],
    "mshr_hcmpersoncertificateentity": ["mshr_partynumber", "mshr_certificatetypeid", "mshr_startdate"],
    "mshr_hcmpersonscreeningentity": ["mshr_partynumber", "mshr_screeningtypeid"],
    "mshr_hcmpersonidentificationnumberentity": ["mshr_partynumber", "mshr_identificationtypeid", "mshr_identificationnumber"],
}

# computed full names: the property and the parts joined by a space (empty parts skipped)
FULL_NAME = {
    "mshr_dirpersonentity": {"property": "mshr_name", "parts": ["mshr_firstname", "mshr_middlename", "mshr_lastnameprefix", "mshr_lastname"]},
}

# documented maximum string lengths (the docs give only this one)
MAX_LENGTH = {("mshr_hcmpersonprofessionalexperienceentity", "mshr_employerlocation"): 60}

# Disputed spellings (NOTES.md: the docs' table and JSON disagree): the gateway resolves them from
# the upstream's $metadata at start; the model keeps the table's spelling as its own.
ALTERNATIVE_NAMES = {
    ("mshr_dirpartycontactentity", "mshr_ismobilephone"): ["mshr_ismobile"],
    ("mshr_hcmpersonidentificationnumberentity", "mshr_issueddate"): ["mshr_issuedate"],
}

# what a write must refer to: when all `properties` are set, a record of `entity` whose `keys`
# hold the same values must exist (checked by the gateway before it writes anything)
REFERENCES = {
    "mshr_hcmcandidatetohireentity": [
        {"properties": ["mshr_recruitingrequestid"], "entity": "mshr_hcmrecruitingrequestentity", "keys": ["mshr_recruitingrequestid"]},
        {"properties": ["mshr_recruitingrequestid", "mshr_positionid"], "entity": "mshr_hcmrecruitingrequestpositionentity",
         "keys": ["mshr_recruitingrequestid", "mshr_positionid"]},
    ],
}

# small, rarely changing tables the gateway may cache across requests
REFERENCE_DATA = {"mshr_hcmratinglevelentity", "mshr_hcmcertificatetypeentity", "mshr_hcmscreeningtypeentity"}

# {company} is the upper-cased mshr_dataareaid, {n} the next number of the sequence
SEQUENCES = {
    "mshr_hcmrecruitingrequestentity": {"mshr_recruitingrequestid": "{company}-{n:06}"},
    "mshr_hcmcandidatetohireentity": {"mshr_candidateid": "{n:06}"},
    "mshr_dirpersonentity": {"mshr_partynumber": "HR{n:09}"},
}

# ---------------------------------------------------------------------------------------------
# Demo-seed samples (ours): realistic values the emulator's demo seed (src/emulator/seed) draws
# from, emitted as `samples` on the properties that have some. Conventions the seed relies on:
#
# * SAMPLE_GROUPS lists groups of one entity's properties whose lists have the same length and are
#   *aligned*: a row takes the same index from each list of a group (a skill ID with its
#   description and GUID, a company code with its company GUID). In the emitted model a group is
#   recognisable only by its length, so two groups of one entity must not share a length (checked
#   below; lists of length 1 are constants and exempt).
# * Repeating a value weights it (seven of the seventeen request statuses are "Active").
# * Option sets are written here by label and emitted as the documented integers.
# * Dates are "YYYY-MM-DD"; the seed writes them in the property's wire form and moves all dates
#   of a row by the same random offset (under a year), so dates aligned in one group keep their
#   order (start before end).
# * null leaves the value empty for that share of rows (never on required properties).
# * Strings (and GUIDs) may hold placeholders the seed expands per row: {property} (the value in
#   the same row, else in the row that owns it, such as the person of a contact),
#   {property:slug} (the same, lower-case letters and digits only), {digits:N} (N random
#   digits) and {counter:N} (the next number for this property, N digits: unique IDs).
# * Readable keys of in-model lookups (mshr_ratinglevelid, mshr_screeningtypeid ...) with samples
#   choose the referenced row by that key; reference tables (rating levels, certificate types,
#   screening types, recruiting request locations) get one row per sample of their key.
# ---------------------------------------------------------------------------------------------

COMPANIES = {  # code -> cdm_company GUID (usmf's is the documented one)
    "usmf": "e13a8e22-f278-ea11-a811-000d3a17b4eb",
    "usrt": "e53a8e22-f278-ea11-a811-000d3a17b4eb",
    "demf": "e93a8e22-f278-ea11-a811-000d3a17b4eb",
}


def fno(ordinal, hi, lo="004105000000"):
    """An F&O virtual-table GUID: data-entity ID, then RecId (hi 16 bits, low 48 bits)."""
    return f"{ordinal:08x}-0000-0000-{hi}-{lo}"


RR = "mshr_hcmrecruitingrequestentity"
RRPOS = "mshr_hcmrecruitingrequestpositionentity"
RRSKILL = "mshr_hcmrecruitingrequestskillentity"
RREDU = "mshr_hcmrecruitingrequesteducationentity"
RRLOC = "mshr_hcmrecruitingrequestlocationentity"
CAND = "mshr_hcmcandidatetohireentity"
PERSON = "mshr_dirpersonentity"
PEDU = "mshr_hcmpersoneducationentity"
PEXP = "mshr_hcmpersonprofessionalexperienceentity"
PADDR = "mshr_hcmpersonaddressentity"
PCONTACT = "mshr_dirpartycontactentity"
PSKILL = "mshr_hcmpersonskillentity"
RATING = "mshr_hcmratinglevelentity"
PCERT = "mshr_hcmpersoncertificateentity"
CERTTYPE = "mshr_hcmcertificatetypeentity"
PSCREEN = "mshr_hcmpersonscreeningentity"
SCREENTYPE = "mshr_hcmscreeningtypeentity"
PIDNUM = "mshr_hcmpersonidentificationnumberentity"

RATING_MODEL_GUID = "0000066e-0000-0000-79ff-004105000000"  # documented ("Skills")
RATING_LEVELS = [  # id, description, factor (4 and 5 as documented)
    ("1", "Beginner", 1), ("2", "Intermediate", 3), ("3", "Proficient", 5),
    ("4", "Advanced", 7), ("5", "Expert", 9),
]
# weighted levels required by a request / held by a candidate
LEVEL_WEIGHTS = ["3", "3", "4", "4", "4", "5", "2", "3"]

SKILLS = [  # id, description, skill GUID (Present and ProjectMgmt as documented)
    ("Present", "Organize and present ideas", fno(0x228, "c3ff")),
    ("ProjectMgmt", "Project management", fno(0x228, "d3ff")),
    ("CustFocus", "Customer focus", fno(0x228, "c6ff")),
    ("CashFlow", "Cash flow management", fno(0x228, "c1ff")),
    ("Budgeting", "Budgeting and forecasting", fno(0x228, "c0ff")),
    ("Negotiate", "Negotiation", fno(0x228, "ccff")),
    ("Leadership", "Leading teams", fno(0x228, "c9ff")),
    ("Teamwork", "Working in teams", fno(0x228, "d7ff")),
    ("Excel", "Microsoft Excel", fno(0x228, "c7ff")),
    ("CSharp", "C# programming", fno(0x228, "c2ff")),
    ("SQL", "SQL and relational databases", fno(0x228, "d5ff")),
    ("Safety", "Workplace safety", fno(0x228, "d4ff")),
    ("Spanish", "Spanish language", fno(0x228, "d6ff")),
    ("ProbSolve", "Problem solving", fno(0x228, "d2ff")),
]

# job, title, function, FTE, regulatory category, job type, exempt status, compensation level,
# low / control point / high, external description
JOBS = [
    ("Project Manager", "Project Manager", "0100", 1, "None", "Managers", "NonExempt", "G05", 70000, 80000, 92500,
     "A Program Manager plans and manages a program’s strategy and main objectives and assesses its impact in our organization."),
    ("Accountant", "Accountant", "0200", 1, "Professional", "Salaried", "Exempt", "G03", 52000, 60000, 68000,
     "Keep our books accurate: reconcile accounts, prepare month-end close and support the annual audit."),
    ("Software Developer", "Software Developer", "0300", 1, "Professional", "Salaried", "Exempt", "G06", 85000, 98000, 115000,
     "Design, build and maintain the line-of-business applications our stores and warehouses run on."),
    ("Sales Representative", "Sales Representative", "0400", 1, "SalesWorker", "Salaried", "NonExempt", "G02", 42000, 50000, 61000,
     "Grow revenue in your territory by building lasting relationships with retail and wholesale customers."),
    ("Warehouse Worker", "Warehouse Worker", "0500", 1, "Laborer", "Hourly", "NonExempt", "G01", 31000, 35000, 40000,
     "Receive, store and ship goods safely and on time in a fast-paced distribution center."),
    ("Forklift Operator", "Forklift Operator", "0500", 1, "Operative", "Hourly", "NonExempt", "G01", 33000, 37500, 42000,
     "Operate forklifts and reach trucks to move pallets between receiving, storage and shipping."),
    ("HR Generalist", "HR Generalist", "0600", 1, "Professional", "Salaried", "Exempt", "G04", 55000, 62000, 71000,
     "Partner with managers on hiring, onboarding, employee relations and benefits."),
    ("Customer Service Rep", "Customer Service Representative", "0700", 0.5, "ServiceWorker", "Hourly", "NonExempt", "G02", 36000, 41000, 47000,
     "Help our customers by phone, chat and email, and turn every contact into a good experience."),
    ("Maintenance Tech", "Maintenance Technician", "0800", 1, "CraftWorker", "Hourly", "NonExempt", "G03", 45000, 52000, 60000,
     "Keep production lines and facilities running through preventive maintenance and quick repairs."),
    ("Admin Assistant", "Administrative Assistant", "0900", 1, "Administrative", "Hourly", "NonExempt", "G02", 38000, 43000, 49000,
     "Support a busy management team with scheduling, travel, documents and office coordination."),
    ("Marketing Manager", "Marketing Manager", "1000", 1, "Manager", "Managers", "Exempt", "G06", 88000, 100000, 118000,
     "Own campaigns from plan to results and lead a small team of marketing specialists."),
    ("CFO", "Chief Financial Officer", "1100", 1, "Executive", "Managers", "Exempt", "G09", 180000, 210000, 250000,
     "Lead finance, treasury and controlling, and advise the executive team on strategy."),
]
JOB_TYPE_GUIDS = {"Managers": "000004ff-0000-0000-b127-fef003000000",  # documented
                  "Salaried": "000004ff-0000-0000-b227-fef003000000",
                  "Hourly": "000004ff-0000-0000-b327-fef003000000"}
TITLE_GUIDS = [fno(0x3a6, f"{0xa4 + i:02x}ff") for i in range(len(JOBS))]  # a4ff documented
COMP_GUIDS = {f"G0{i}": f"0000041c-0000-0000-{0xca + i:02x}27-fef003000000" for i in range(1, 10)}  # G05 = ce27 documented

# recruiting request locations: company, location ID, recruiting location ID, description,
# country, street, city, state, county, zip, phone
LOCATIONS = [
    ("usmf", "SEA-HQ", "Seattle headquarters", "USA", "123 Coffee Street", "Seattle", "WA", "King", "98101", "+1 206-555-0100"),
    ("usmf", "RED-CAMPUS", "Redmond campus", "USA", "1 Microsoft Way", "Redmond", "WA", "King", "98052", "+1 425-555-0110"),
    ("usmf", "CHI-DC", "Chicago distribution center", "USA", "2400 S Halsted St", "Chicago", "IL", "Cook", "60608", "+1 312-555-0120"),
    ("usmf", "DAL-PLANT", "Dallas plant", "USA", "1500 Marilla St", "Dallas", "TX", "Dallas", "75201", "+1 214-555-0130"),
    ("usmf", "ATL-OFFICE", "Atlanta sales office", "USA", "191 Peachtree St NE", "Atlanta", "GA", "Fulton", "30303", "+1 404-555-0140"),
    ("usmf", "BOS-OFFICE", "Boston office", "USA", "1 Federal St", "Boston", "MA", "Suffolk", "02110", "+1 617-555-0150"),
    ("usmf", "DEN-WH", "Denver warehouse", "USA", "4800 Dahlia St", "Denver", "CO", "Denver", "80216", "+1 303-555-0160"),
    ("usmf", "PHX-DC", "Phoenix distribution center", "USA", "3000 W Buckeye Rd", "Phoenix", "AZ", "Maricopa", "85009", "+1 602-555-0170"),
    ("usmf", "MIA-OFFICE", "Miami office", "USA", "200 S Biscayne Blvd", "Miami", "FL", "Miami-Dade", "33131", "+1 305-555-0180"),
    ("usmf", "SD-LAB", "San Diego lab", "USA", "10210 Campus Point Dr", "San Diego", "CA", "San Diego", "92121", "+1 858-555-0190"),
    ("usrt", "NYC-STORE", "New York flagship store", "USA", "350 5th Ave", "New York", "NY", "New York", "10118", "+1 212-555-0200"),
    ("usrt", "LA-STORE", "Los Angeles store", "USA", "189 The Grove Dr", "Los Angeles", "CA", "Los Angeles", "90036", "+1 323-555-0210"),
    ("usrt", "HOU-STORE", "Houston store", "USA", "5085 Westheimer Rd", "Houston", "TX", "Harris", "77056", "+1 713-555-0220"),
    ("usrt", "PDX-STORE", "Portland store", "USA", "700 SW 5th Ave", "Portland", "OR", "Multnomah", "97204", "+1 503-555-0230"),
    ("usrt", "MSP-STORE", "Minneapolis store", "USA", "60 E Broadway", "Bloomington", "MN", "Hennepin", "55425", "+1 952-555-0240"),
    ("demf", "BER-HQ", "Berlin Hauptsitz", "DEU", "Friedrichstraße 68", "Berlin", "BE", "", "10117", "+49 30 5550100"),
    ("demf", "MUC-OFFICE", "München Büro", "DEU", "Leopoldstraße 28", "München", "BY", "", "80802", "+49 89 5550110"),
    ("demf", "HAM-LAGER", "Hamburg Lager", "DEU", "Am Sandtorkai 50", "Hamburg", "HH", "", "20457", "+49 40 5550120"),
    ("demf", "FRA-OFFICE", "Frankfurt Büro", "DEU", "Mainzer Landstraße 50", "Frankfurt am Main", "HE", "", "60325", "+49 69 5550130"),
    ("demf", "CGN-WERK", "Köln Werk", "DEU", "Industriestraße 161", "Köln", "NW", "", "50999", "+49 221 5550140"),
]
COUNTRY_GUIDS = {"USA": "0000073e-0000-0000-e6ff-004105000000", "DEU": "0000073e-0000-0000-5aff-004105000000",
                 "CAN": "0000073e-0000-0000-26ff-004105000000"}

# education level, its GUID (request: education level; person: degree), description
EDU_LEVELS = {
    "HighSchool": ("High school diploma", "80ff"), "Associate": ("Associate degree", "81ff"),
    "Bachelor": ("Bachelor", "82ff"), "Master": ("Master", "83ff"), "Doctorate": ("Doctorate", "84ff"),
}
DISCIPLINES = {  # id: (description, GUID hi) (Business Admin / Mgmt documented)
    "Business Admin": ("Business Administration", "9eff"), "Business Mgmt": ("Business Management", "9dff"),
    "Accounting": ("Accounting", "a0ff"), "Comp Sci": ("Computer Science", "a1ff"),
    "Marketing": ("Marketing", "a2ff"), "Mech Eng": ("Mechanical Engineering", "a3ff"),
    "HR Mgmt": ("Human Resource Management", "a4ff"), "Finance": ("Finance", "a5ff"),
    "Logistics": ("Logistics and Supply Chain", "a6ff"),
}
INSTITUTIONS = {  # id: GUID hi (Cottonwood Univ is the documented one)
    "Cottonwood Univ": "11ff", "Lakeside College": "12ff", "Northwind Tech": "13ff",
    "Fabrikam Institute": "14ff", "Riverside State": "15ff", "TU Nordstadt": "16ff",
    "Adatum Community": "17ff",
}

FIRST_NAMES = [  # with gender
    ("Evelyn", "Female"), ("James", "Male"), ("Olivia", "Female"), ("Liam", "Male"), ("Sophia", "Female"),
    ("Noah", "Male"), ("Isabella", "Female"), ("Mason", "Male"), ("Mia", "Female"), ("Ethan", "Male"),
    ("Charlotte", "Female"), ("Lucas", "Male"), ("Amelia", "Female"), ("Benjamin", "Male"), ("Harper", "Female"),
    ("Elijah", "Male"), ("Abigail", "Female"), ("Alexander", "Male"), ("Emily", "Female"), ("Daniel", "Male"),
    ("Ava", "Female"), ("Matthew", "Male"), ("Ella", "Female"), ("Henry", "Male"), ("Grace", "Female"),
    ("Samuel", "Male"), ("Chloe", "Female"), ("David", "Male"), ("Zoe", "Female"), ("Joseph", "Male"),
    ("Priya", "Female"), ("Arjun", "Male"), ("Mei", "Female"), ("Wei", "Male"), ("Sofia", "Female"),
    ("Mateo", "Male"), ("Fatima", "Female"), ("Omar", "Male"), ("Hannah", "Female"), ("Jonas", "Male"),
    ("Lena", "Female"), ("Felix", "Male"), ("Aisha", "Female"), ("Kenji", "Male"), ("Yuki", "Female"),
    ("Alex", "Non-Specific"), ("Jordan", "Non-Specific"), ("Taylor", "None"),
]
LAST_NAMES = [
    "Chambers", "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
    "Walker", "Young", "Allen", "King", "Wright", "Scott", "Nguyen", "Patel", "Kim", "Chen",
    "Müller", "Schmidt", "Schneider", "Fischer", "O'Brien",
]
EMPLOYERS = [  # name, location, phone, url (fictional Microsoft sample companies)
    ("Contoso Ltd.", "Seattle, WA", "+1 206-555-0101", "https://www.contoso.com"),
    ("Fabrikam, Inc.", "Redmond, WA", "+1 425-555-0102", "https://www.fabrikam.com"),
    ("Northwind Traders", "Portland, OR", "+1 503-555-0103", "https://www.northwindtraders.com"),
    ("Adventure Works Cycles", "Bothell, WA", "+1 425-555-0104", "https://www.adventure-works.com"),
    ("Tailspin Toys", "Chicago, IL", "+1 312-555-0105", "https://www.tailspintoys.com"),
    ("Wide World Importers", "San Francisco, CA", "+1 415-555-0106", "https://www.wideworldimporters.com"),
    ("Litware, Inc.", "Boston, MA", "+1 617-555-0107", "https://www.litwareinc.com"),
    ("Proseware, Inc.", "Austin, TX", "+1 512-555-0108", "https://www.proseware.com"),
    ("Woodgrove Bank", "New York, NY", "+1 212-555-0109", "https://www.woodgrovebank.com"),
    ("Trey Research", "San Diego, CA", "+1 858-555-0110", "https://www.treyresearch.net"),
    ("Alpine Ski House", "Denver, CO", "+1 303-555-0111", "https://www.alpineskihouse.com"),
    ("Coho Winery", "Napa, CA", "+1 707-555-0112", "https://www.cohowinery.com"),
    ("Lucerne Publishing", "Atlanta, GA", "+1 404-555-0113", "https://www.lucernepublishing.com"),
    ("Margie's Travel", "Miami, FL", "+1 305-555-0114", "https://www.margiestravel.com"),
    ("Fourth Coffee", "Berlin, Germany", "+49 30 5550115", "https://www.fourthcoffee.com"),
]
EMPLOYER_POSITIONS = [
    "Project Coordinator", "Staff Accountant", "Junior Developer", "Software Engineer", "Account Executive",
    "Warehouse Associate", "Shift Supervisor", "HR Assistant", "Customer Support Specialist", "Office Manager",
    "Marketing Specialist", "Financial Analyst", "Operations Manager", "Team Lead",
]
ADDRESSES = [  # street, city, state, county, zip, country
    ("4567 Main Street", "Bellevue", "WA", "King", "98004", "USA"),
    ("88 Pine Avenue", "Seattle", "WA", "King", "98122", "USA"),
    ("1200 Elm Drive", "Tacoma", "WA", "Pierce", "98402", "USA"),
    ("310 Oak Lane", "Kirkland", "WA", "King", "98033", "USA"),
    ("77 Maple Court", "Redmond", "WA", "King", "98052", "USA"),
    ("2450 Lakeview Blvd", "Chicago", "IL", "Cook", "60614", "USA"),
    ("19 Willow Road", "Evanston", "IL", "Cook", "60201", "USA"),
    ("605 Cedar Street", "Dallas", "TX", "Dallas", "75204", "USA"),
    ("1418 Birch Way", "Plano", "TX", "Collin", "75024", "USA"),
    ("52 Magnolia Drive", "Atlanta", "GA", "Fulton", "30309", "USA"),
    ("901 Harbor Street", "Boston", "MA", "Suffolk", "02118", "USA"),
    ("333 Aspen Circle", "Denver", "CO", "Denver", "80206", "USA"),
    ("7001 Desert Palm Rd", "Phoenix", "AZ", "Maricopa", "85016", "USA"),
    ("240 Ocean Drive", "Miami Beach", "FL", "Miami-Dade", "33139", "USA"),
    ("15 Broadway", "New York", "NY", "New York", "10004", "USA"),
    ("8 Sunset Blvd", "Los Angeles", "CA", "Los Angeles", "90026", "USA"),
    ("Torstraße 140", "Berlin", "BE", "", "10119", "DEU"),
    ("Maximilianstraße 12", "München", "BY", "", "80539", "DEU"),
    ("Eppendorfer Weg 87", "Hamburg", "HH", "", "20259", "DEU"),
    ("1 Yonge Street", "Toronto", "ON", "", "M5E 1E5", "CAN"),
]
CERTIFICATE_TYPES = [  # id, description, requires renewal
    ("Forklift", "Forklift operator certification", "Yes"), ("CPR", "CPR and AED", "Yes"),
    ("FirstAid", "First aid", "Yes"), ("CPA", "Certified public accountant", "No"),
    ("PMP", "Project Management Professional", "Yes"), ("CDL-A", "Commercial driver's license class A", "Yes"),
    ("OSHA30", "OSHA 30-hour safety training", "No"), ("ServSafe", "Food safety manager", "Yes"),
]
SCREENING_TYPES = [  # id, description, frequency unit, generate from, interval
    ("Drug test", "Pre-employment drug test", "One-time only", "Not selected", 0),
    ("Background", "Criminal background check", "One-time only", "Not selected", 0),
    ("Credit check", "Credit history check", "One-time only", "Not selected", 0),
    ("Medical", "Occupational medical exam", "Yearly", "Date completed", 1),
    ("References", "Reference check", "One-time only", "Not selected", 0),
    ("Driving record", "Motor vehicle record check", "Yearly", "Date required", 1),
]


def cols(rows, *names):
    """Turns a list of tuples into {name: column}, skipping columns named None."""
    return {n: [r[i] for r in rows] for i, n in enumerate(names) if n is not None}


def company_group(codes):
    return {"mshr_dataareaid": codes, "_mshr_dataareaid_id_value": [COMPANIES[c] for c in codes]}


def sample_groups():
    jobs = [j + (TITLE_GUIDS[i], fno(0xab2, f"{0xba + i:02x}ff")) for i, j in enumerate(JOBS)]
    levels = [(lv, dict((r[0], r[1]) for r in RATING_LEVELS)[lv]) for lv in LEVEL_WEIGHTS]
    req_edu = [("Bachelor", "Business Admin"), ("Bachelor", "Business Mgmt"), ("Master", "Business Admin"),
               ("Bachelor", "Accounting"), ("Bachelor", "Comp Sci"), ("Associate", "Logistics"),
               ("HighSchool", "Logistics"), ("Master", "Finance"), ("Bachelor", "HR Mgmt")]
    person_edu = [("Bachelor", "Business Mgmt", "Cottonwood Univ"), ("Bachelor", "Business Admin", "Lakeside College"),
                  ("Master", "Business Admin", "Cottonwood Univ"), ("Bachelor", "Comp Sci", "Northwind Tech"),
                  ("Master", "Comp Sci", "TU Nordstadt"), ("Associate", "Logistics", "Adatum Community"),
                  ("HighSchool", "Logistics", "Adatum Community"), ("Bachelor", "Accounting", "Riverside State"),
                  ("Bachelor", "Marketing", "Fabrikam Institute"), ("Master", "Finance", "Riverside State"),
                  ("Bachelor", "Mech Eng", "TU Nordstadt"), ("Doctorate", "HR Mgmt", "Lakeside College")]
    return [
        # ---- recruiting request
        (RR, company_group(["usmf", "usmf", "usmf", "usrt", "demf"])),
        (RR, {
            "mshr_jobid": [j[0] for j in jobs], "mshr_titleid": [j[1] for j in jobs],
            "mshr_description": [j[1] for j in jobs], "mshr_jobfunctionid": [j[2] for j in jobs],
            "mshr_defaultfulltimeequivalency": [j[3] for j in jobs],
            "mshr_regulatoryjobcategory": [j[4] for j in jobs], "mshr_jobtypeid": [j[5] for j in jobs],
            "_mshr_fk_jobtype_id_value": [JOB_TYPE_GUIDS[j[5]] for j in jobs],
            "mshr_exemptstatus": [j[6] for j in jobs], "mshr_compensationlevelid": [j[7] for j in jobs],
            "_mshr_fk_compensationlevel_id_value": [COMP_GUIDS[j[7]] for j in jobs],
            "mshr_compensationlowthreshold": [j[8] for j in jobs],
            "mshr_compensationcontrolpoint": [j[9] for j in jobs],
            "mshr_compensationhighthreshold": [j[10] for j in jobs],
            "mshr_externaldescription": [j[11] for j in jobs],
            "_mshr_fk_title_id_value": [j[12] for j in jobs], "_mshr_fk_job_id_value": [j[13] for j in jobs],
        }),
        (RR, {"mshr_hiringmanagerpersonnelnumber": ["000662", "000148", "000237", "000301", "000415", "000509",
                                                    "000583", "000720", "000034"],
              "_mshr_fk_hiringmanager_id_value": ["0000009e-0000-0000-2a0d-000010000000"]
              + [fno(0x9e, f"{h:04x}", "000010000000") for h in (0x2b0d, 0x2c0d, 0x2d0d, 0x2e0d, 0x2f0d, 0x300d, 0x310d, 0x320d)]}),
        (RR, {"mshr_status": ["Active"] * 12 + ["Draft", "Draft", "In Review", "In Review", "Pending", "Canceled",
                                               "Denied", "Closed", "Closed", "Closed"]}),
        (RR, {"mshr_comments": ["", "", "", "Backfill for a resignation; please prioritize.",
                                "Budget approved for this fiscal year.", "Internal candidates preferred.",
                                "Relocation assistance available."]}),
        (RR, {"mshr_estimatedstartdate": ["2024-09-02", "2024-10-01", "2024-11-04", "2025-01-06", "2025-02-03",
                                          "2025-03-03", "2025-04-01", "2025-05-05", "2025-06-02", "2025-07-01",
                                          "2025-09-01"]}),
        # ---- recruiting request position (description and company come from the request)
        (RRPOS, {"mshr_positionid": ["{counter:6}"],
                 "_mshr_fk_position_id_value": ["000006b9-0000-0000-0000-01{counter:10}"]}),
        (RRPOS, {"mshr_positiontypeid": ["Full-time", "Full-time", "Part-time", "Intern"],
                 "_mshr_fk_positiontype_id_value": ["000008e5-0000-0000-ab27-fef003000000"] * 2
                 + ["000008e5-0000-0000-ac27-fef003000000", "000008e5-0000-0000-ad27-fef003000000"]}),
        (RRPOS, {"mshr_status": ["Open"] * 4 + ["Filled", "Canceled"]}),
        (RRPOS, {"mshr_departmentnumber": ["028", "022", "023", "024", "031", "036", "040"],
                 "_mshr_fk_department_id_value": [fno(0xb01, f"{h:02x}08", "014105000000") for h in (1, 2, 3, 4, 5, 6, 7)]}),
        (RRPOS, {"mshr_financialdimension": ["007", "019", "011", "014", "022", "025", "030", "033"]}),
        (RRPOS, {"mshr_reportstopositionid": ["000434", "000329", "000218", "000107", "000512", "000276", "000390",
                                              "000145", "000468"],
                 "_mshr_fk_reportstoposition_id_value": [fno(0x6b9, f"{h:04x}", "014105000000") for h in
                                                         (0x1603, 0x1401, 0x1201, 0x1001, 0x1803, 0x1302, 0x1502, 0x1101, 0x1703)],
                 "mshr_reportstopersonnelnumber": ["000364", "000277", "000190", "000088", "000455", "000213",
                                                   "000331", "000120", "000402"],
                 "_mshr_fk_reportstoworker_id_value": [fno(0x9e, f"{h:04x}", "014105000000") for h in
                                                       (0xea01, 0x8601, 0x7401, 0x6201, 0xf801, 0x8001, 0x9201, 0x6801, 0xee01)]}),
        # ---- recruiting request skill
        (RRSKILL, {"mshr_skillid": [s[0] for s in SKILLS], "mshr_skilldescription": [s[1] for s in SKILLS],
                   "_mshr_fk_skill_id_value": [s[2] for s in SKILLS]}),
        (RRSKILL, {"mshr_ratinglevelid": [lv[0] for lv in levels],
                   "mshr_ratingleveldescription": [lv[1] for lv in levels]}),
        (RRSKILL, {"mshr_ratingmodelid": ["Skills"], "_mshr_fk_ratingmodel_id_value": [RATING_MODEL_GUID]}),
        # ---- recruiting request education
        (RREDU, {"mshr_educationlevelid": [e[0] for e in req_edu],
                 "_mshr_fk_educationlevel_id_value": [fno(0xd6d, EDU_LEVELS[e[0]][1]) for e in req_edu],
                 "mshr_educationleveldescription": [EDU_LEVELS[e[0]][0] for e in req_edu],
                 "mshr_educationdisciplineid": [e[1] for e in req_edu],
                 "_mshr_fk_educationdiscipline_id_value": [fno(0x9e6, DISCIPLINES[e[1]][1]) for e in req_edu],
                 "mshr_educationdisciplinedescription": [DISCIPLINES[e[1]][0] for e in req_edu]}),
        # ---- recruiting request location (reference data: one row per location)
        (RRLOC, {**company_group([x[0] for x in LOCATIONS]),
                 "mshr_locationid": [f"{221 + 7 * i:09d}" for i in range(len(LOCATIONS))],
                 "mshr_recruitingrequestlocationid": [x[1] for x in LOCATIONS],
                 "mshr_description": [x[2] for x in LOCATIONS],
                 "mshr_countryregionid": [x[3] for x in LOCATIONS],
                 "_mshr_fk_countryregion_id_value": [COUNTRY_GUIDS[x[3]] for x in LOCATIONS],
                 "mshr_street": [x[4] for x in LOCATIONS], "mshr_city": [x[5] for x in LOCATIONS],
                 "mshr_state": [x[6] for x in LOCATIONS], "mshr_county": [x[7] for x in LOCATIONS],
                 "mshr_zipcode": [x[8] for x in LOCATIONS], "mshr_telephone": [x[9] for x in LOCATIONS],
                 "mshr_email": [f"recruiting.{x[5].split()[0].lower().replace('ü', 'ue').replace('ö', 'oe')}@contoso.com" for x in LOCATIONS],
                 "mshr_internetaddress": [f"https://careers.contoso.com/{x[1].lower()}" for x in LOCATIONS]}),
        # ---- candidate to hire (names and gender come from its person, company from its request)
        (CAND, {"mshr_birthdate": ["1965-04-12", "1971-09-30", "1978-02-17", "1980-11-05", "1983-06-21", "1985-01-09",
                                   "1987-08-14", "1989-12-02", "1990-03-27", "1991-07-08", "1992-10-19", "1976-05-25"],
                "mshr_militaryservicestartdate": [None] * 7 + ["2009-09-01", "2008-06-15", None, None, "1994-07-01"],
                "mshr_militaryserviceenddate": [None] * 7 + ["2013-08-31", "2012-06-14", None, None, "1998-06-30"],
                "mshr_veteranstatusid": [""] * 7 + ["Veteran", "Disabled", "", "", "Veteran"],
                "_mshr_fk_veteranstatus_id_value": [None] * 7 + [fno(0x71c, "01ff"), fno(0x71c, "02ff"), None, None, fno(0x71c, "01ff")],
                "mshr_isdisabledveteran": ["No"] * 8 + ["Yes", "No", "No", "No"]}),
        (CAND, {"mshr_citizenshipcountrycode": ["USA", "USA", "USA", "DEU", "CAN"]}),
        (CAND, {"mshr_availabilitydate": ["2024-08-19", "2024-09-16", "2024-10-14", "2024-11-18", "2025-01-13",
                                          "2025-02-17", "2025-03-18", "2025-04-14", "2025-05-19", "2025-06-16"]}),
        (CAND, {"mshr_iswillingtorelocate": ["No", "Yes", "No"]}),
        (CAND, {"mshr_comments": ["{mshr_firstname}'s experience is exactly what we need for this position.", "", "",
                                  "Strong references from two previous employers.",
                                  "{mshr_firstname} accepted the offer on the first call.",
                                  "Start date depends on the notice period at the current employer."]}),
        (CAND, {"mshr_applicantintegrationresult": ["Not processed"] * 4 + ["Hired", "Hired", "Not hired", "Dismissed"],
                "mshr_donothirereasoncodeid": [""] * 6 + ["Salary", ""],
                "_mshr_fk_reasoncode_id_value": [None] * 6 + [fno(0x6f1, "41ff"), None]}),
        # ---- person
        (PERSON, {"mshr_firstname": [f[0] for f in FIRST_NAMES], "mshr_gender": [f[1] for f in FIRST_NAMES]}),
        (PERSON, {"mshr_lastname": LAST_NAMES}),
        (PERSON, {"mshr_middlename": ["", "", "", "", "", "J.", "Marie", "A.", "Lee", "R."]}),
        (PERSON, {"mshr_name": ["{mshr_firstname} {mshr_middlename} {mshr_lastname}"],
                  "mshr_namesequencedisplayas": ["FirstMiddleLast"], "mshr_partytype": ["Person"],
                  "mshr_primarycontactemail": ["{mshr_firstname:slug}.{mshr_lastname:slug}@outlook.com"],
                  "mshr_primarycontactemaildescription": ["Personal email"],
                  "mshr_primarycontactlinkedin": ["linkedin.com/in/{mshr_firstname:slug}{mshr_lastname:slug}"],
                  "mshr_primarycontactlinkedindescription": ["LinkedIn"]}),
        (PERSON, {"mshr_languageid": ["en-us", "en-us", "en-us", "de", "es", "fr"]}),
        (PERSON, {"mshr_maritalstatus": ["None", "Single", "Single", "Married", "Married", "Married", "Divorced"]}),
        (PERSON, {"mshr_hobbies": ["", "", "Hiking", "Photography", "Chess", "Cycling", "Cooking", "Running", "Gardening"]}),
        # ---- person education
        (PEDU, {"mshr_educationlevelid": [e[0] for e in person_edu],
                "_mshr_fk_educationlevel_id_value": [fno(0xd71, EDU_LEVELS[e[0]][1]) for e in person_edu],
                "mshr_educationdisciplineid": [e[1] for e in person_edu],
                "_mshr_fk_educationdiscipline_id_value": [fno(0x9e6, DISCIPLINES[e[1]][1]) for e in person_edu],
                "mshr_educationinstitutionid": [e[2] for e in person_edu],
                "_mshr_fk_educationinstitution_id_value": [fno(0x9e8, INSTITUTIONS[e[2]]) for e in person_edu],
                "mshr_description": [f"{EDU_LEVELS[e[0]][0]}, {DISCIPLINES[e[1]][0]}" for e in person_edu]}),
        (PEDU, {"mshr_startdate": ["2010-09-01", "2011-09-01", "2012-08-27", "2013-09-03", "2014-09-02", "2015-08-31",
                                   "2016-09-06", "2010-01-11", "2012-01-09"],
                "mshr_enddate": ["2014-06-13", "2015-06-12", "2014-06-20", "2017-06-09", "2016-06-17", "2017-05-26",
                                 "2020-06-12", "2012-12-14", "2013-12-13"],
                "mshr_duration": [4, 4, 2, 4, 2, 2, 4, 3, 2],
                "mshr_durationunit": ["Years"] * 9}),
        (PEDU, {"mshr_creditbasis": ["Blank", "Semester", "Semester", "Quarter", "Term"],
                "mshr_creditscompleted": [0, 120, 128, 180, 90], "mshr_creditsearned": [0, 120, 128, 180, 90],
                "mshr_creditsneeded": [0, 120, 120, 180, 90]}),
        (PEDU, {"mshr_gradepointaverage": [0, 3.2, 3.6, 2.9, 3.85, 3.4, 3.0],
                "mshr_gradescale": ["", "4.0", "4.0", "4.0", "4.0", "4.0", "4.0"]}),
        (PEDU, {"mshr_notes": ["", "", "Graduated with honors.", "Thesis on supply chain optimization."]}),
        # ---- person professional experience
        (PEXP, cols(EMPLOYERS, "mshr_employername", "mshr_employerlocation", "mshr_phone", "mshr_url")),
        (PEXP, {"mshr_employerposition": EMPLOYER_POSITIONS}),
        (PEXP, {"mshr_startdate": ["2012-03-01", "2013-07-15", "2014-01-06", "2015-05-01", "2016-02-15", "2016-10-03",
                                   "2017-06-12", "2018-04-02", "2019-01-07", "2019-09-16", "2020-11-02"],
                "mshr_enddate": ["2015-02-27", "2016-06-30", "2018-12-21", None, "2019-08-30", "2020-03-31",
                                 None, "2022-01-31", "2023-06-30", None, "2024-05-31"]}),
        (PEXP, {"mshr_allowcontactemployer": ["Blank", "Yes", "No"]}),
        (PEXP, {"mshr_note": ["", "", "Left for a larger role.", "Contract position.", "Promoted twice."]}),
        # ---- person address
        (PADDR, {"mshr_street": [a[0] for a in ADDRESSES], "mshr_city": [a[1] for a in ADDRESSES],
                 "mshr_state": [a[2] for a in ADDRESSES], "mshr_county": [a[3] for a in ADDRESSES],
                 "mshr_zipcode": [a[4] for a in ADDRESSES], "mshr_countryregionid": [a[5] for a in ADDRESSES],
                 "_mshr_fk_countryregion_id_value": [COUNTRY_GUIDS[a[5]] for a in ADDRESSES]}),
        (PADDR, {"mshr_description": ["Home", "Work", "Mailing", "Previous home", "Other"],
                 "mshr_roles": ["Home", "Business", "Delivery", "Home", "Other"],
                 "mshr_isprimary": ["Yes", "No", "No", "No", "No"],
                 "mshr_isprivate": ["Yes", "No", "Yes", "Yes", "No"]}),
        (PADDR, {"mshr_locationid": ["000{counter:6}"]}),
        # ---- party contact (one entry per kind, so a person's contacts differ)
        (PCONTACT, {
            "mshr_type": ["Phone", "Email address", "Phone", "LinkedIn", "Email address", "URL"],
            "mshr_description": ["Mobile", "Personal email", "Home phone", "LinkedIn", "Work email", "Portfolio"],
            "mshr_locator": ["+1 425-555-{digits:4}", "{mshr_firstname:slug}.{mshr_lastname:slug}@outlook.com",
                             "+1 206-555-{digits:4}", "linkedin.com/in/{mshr_firstname:slug}{mshr_lastname:slug}",
                             "{mshr_firstname:slug}{digits:2}@contoso.com",
                             "https://{mshr_firstname:slug}{mshr_lastname:slug}.dev"],
            "mshr_locatorextension": ["", "", "", "", "", ""],
            "mshr_countryregioncode": ["USA", "", "USA", "", "", ""],
            "mshr_ismobilephone": ["Yes", "No", "No", "No", "No", "No"],
            "mshr_isinstantmessage": ["No", "No", "No", "No", "Yes", "No"],
            "mshr_isprimary": ["Yes", "Yes", "No", "Yes", "No", "Yes"],
            "mshr_isprivate": ["Yes", "Yes", "Yes", "No", "No", "No"],
            "mshr_purpose": ["Home", "Home", "Home", "Business", "Business", "Business"]}),
        (PCONTACT, {"mshr_locationid": ["001{counter:6}"]}),
        # ---- person skill
        (PSKILL, {"mshr_skillid": [s[0] for s in SKILLS], "_mshr_fk_skill_id_value": [s[2] for s in SKILLS]}),
        (PSKILL, {"mshr_levelid": LEVEL_WEIGHTS}),
        (PSKILL, {"mshr_ratingid": ["Skills"]}),
        (PSKILL, {"mshr_leveltype": ["Actual"] * 4 + ["Target"]}),
        (PSKILL, {"mshr_leveldate": ["2013-01-01", "2015-06-01", "2016-03-15", "2017-09-01", "2018-01-15",
                                     "2019-05-01", "2020-10-01", "2021-04-01", "2022-02-01", "2023-07-01"]}),
        (PSKILL, {"mshr_yearsofexperience": [0, 1, 2, 3, 4, 5, 7, 10, 12]}),
        (PSKILL, {"mshr_verified": ["No", "Yes", "Yes"]}),
        (PSKILL, {"mshr_ratinglevelexaminer": ["", "", "", "000521", "000234", "000117"],
                  "_mshr_fk_ratinglevelexaminer_id_value": [None] * 3 + [fno(0x9f, f"{h:04x}", "014105000000") for h in (0x0902, 0x7201, 0x3301)],
                  "mshr_certifier": ["", "", "", "000521", "000234", ""],
                  "_mshr_fk_certifier_id_value": [None] * 3 + [fno(0x9f, f"{h:04x}", "014105000000") for h in (0x0902, 0x7201)] + [None]}),
        # ---- rating level (reference data: the "Skills" rating model's five levels)
        (RATING, cols(RATING_LEVELS, "mshr_ratinglevelid", "mshr_description", "mshr_factor")),
        (RATING, {"mshr_ratingmodelid": ["Skills"], "_mshr_fk_ratingmodelentity_id_value": [RATING_MODEL_GUID]}),
        # ---- certificate type (reference data)
        (CERTTYPE, cols(CERTIFICATE_TYPES, "mshr_certificatetype", "mshr_description", "mshr_requirerenewal")),
        # ---- person certificate
        (PCERT, {"mshr_certificatetypeid": [c[0] for c in CERTIFICATE_TYPES]}),
        (PCERT, {"mshr_startdate": ["2015-04-10", "2017-11-20", "2018-06-01", "2019-03-15", "2020-09-01",
                                    "2021-05-17", "2022-08-08"],
                 "mshr_enddate": ["2018-04-10", "2019-11-20", None, "2022-03-15", "2023-09-01", "2024-05-17", None]}),
        (PCERT, {"mshr_notes": ["", "", "Renewal scheduled.", "Copy of the certificate on file."]}),
        # ---- screening type (reference data)
        (SCREENTYPE, cols(SCREENING_TYPES, "mshr_screeningtypeid", "mshr_description", "mshr_frequencyunit",
                          "mshr_generatefrom", "mshr_frequencyinterval")),
        # ---- person screening
        (PSCREEN, {"mshr_screeningtypeid": [s[0] for s in SCREENING_TYPES]}),
        (PSCREEN, {"mshr_status": ["Pass", "Pass", "Pass", "Not Complete", "Fail"],
                   "mshr_requiredby": ["2024-09-30", "2024-10-31", "2025-01-31", "2025-03-31", "2024-11-30"],
                   "mshr_completeddate": ["2024-09-12", "2024-10-02", "2025-01-20", None, "2024-11-18"],
                   "mshr_note": ["", "Cleared by the provider.", "", "Appointment booked.", "Candidate informed."]}),
        # ---- person identification number (one entry per type)
        (PIDNUM, {"mshr_identificationtypeid": ["SSN", "Passport", "DL", "StateID", "PersoID"],
                  "_mshr_fk_identificationtype_id_value": [fno(0x6a3, f"{h:02x}ff") for h in (0x51, 0x52, 0x53, 0x54, 0x55)],
                  "mshr_identificationnumber": ["{digits:3}-{digits:2}-{digits:4}", "5{digits:8}", "WDL{digits:9}",
                                                "S{digits:8}", "L{digits:8}"],
                  "mshr_issuingagencyid": ["SSA", "State Dept", "DOL", "DOL", "Bürgeramt"],
                  "_mshr_fk_issuingagency_id_value": [fno(0x6a5, f"{h:02x}ff") for h in (0x31, 0x32, 0x33, 0x33, 0x34)],
                  "mshr_description": ["Social security number", "Passport", "Driver's license", "State ID card",
                                       "Personalausweis"],
                  "mshr_entrytype": ["", "Travel document", "", "", "Travel document"],
                  "mshr_isprimary": ["Yes", "No", "No", "No", "No"],
                  "mshr_issueddate": ["2006-05-15", "2019-04-10", "2021-08-15", "2020-02-03", "2018-11-22"],
                  "mshr_expirationdate": [None, "2029-04-09", "2029-08-15", "2028-02-03", "2028-11-21"]}),
    ]


def build_samples(src_entities, option_sets):
    """Checks SAMPLE_GROUPS against the model and returns {(entity, property): samples}."""
    props = {(e["logicalName"], p["name"]): p for e in src_entities for p in e["properties"]}
    labels = {o["name"]: {v["label"]: v["value"] for v in o["values"]} for o in option_sets}
    out = {}
    lengths = {}
    for entity, group in sample_groups():
        n = {len(v) for v in group.values()}
        assert len(n) == 1, f"{entity}: lists of one group differ in length: {sorted(group)}"
        n = n.pop()
        if n > 1:
            other = lengths.setdefault(entity, {}).get(n)
            assert other is None, f"{entity}: two sample groups of length {n} ({other}, {sorted(group)})"
            lengths[entity][n] = sorted(group)
        for name, values in group.items():
            p = props.get((entity, name))
            assert p is not None, f"no property {entity}.{name}"
            assert (entity, name) not in out, f"{entity}.{name} sampled twice"
            if p["required"]:
                assert None not in values, f"{entity}.{name} is required: no null samples"
            if p["optionSet"] in labels:
                values = [None if v is None else labels[p["optionSet"]][v] for v in values]
            elif p["normalizedType"] in ("date", "datetime"):
                for v in values:
                    assert v is None or (len(v) == 10 and v[4] == "-" and v[7] == "-"), f"{entity}.{name}: {v}"
            out[(entity, name)] = values
    return out


PROP_KEYS = ["name", "displayName", "normalizedType", "readOnly", "writeOnce", "required",
             "systemGenerated", "optionSet", "description", "graphqlField", "graphqlType"]

# Flags the docs leave out: Person screening's mshr_primaryfield is only in the article's JSON
# block, not in its properties table. It is computed like every sibling entity's primary field.
UNDOCUMENTED_FLAGS = {
    ("mshr_hcmpersonscreeningentity", "mshr_primaryfield"): {
        "displayName": "Primary Field", "readOnly": True, "writeOnce": False, "required": False,
        "systemGenerated": False},
}


def main(path):
    src = json.load(open(path))
    option_sets = {o["name"] for o in src["optionSets"]}
    by_logical = {e["logicalName"]: e for e in src["entities"]}
    samples = build_samples(src["entities"], src["optionSets"])
    out_entities = []
    for e in src["entities"]:
        props = []
        for p in e["properties"]:
            q = {k: p.get(k) for k in PROP_KEYS}
            for k, v in UNDOCUMENTED_FLAGS.get((e["logicalName"], p["name"]), {}).items():
                if q[k] is None:
                    q[k] = v
            missing = [k for k in PROP_KEYS if q[k] is None and k != "optionSet"]
            assert not missing, f"{e['logicalName']}.{p['name']}: no {missing}"
            if q["optionSet"] not in option_sets:
                q["optionSet"] = None  # undocumented option set (mshr_dirpartytype): a plain string
            if q["normalizedType"] == "optionSet" and q["optionSet"] is None:
                q["normalizedType"] = "string"
            if p["name"] == e["primaryKey"]:
                q["normalizedType"] = "guid"  # Dataverse primary keys are always GUIDs
            if p.get("lookup"):
                lk = p["lookup"]
                q["lookup"] = {"target": lk["target"], "attribute": lk["lookupAttributeLogicalName"],
                               "targetInModel": lk["target"] in by_logical,
                               # Dataverse cannot filter or sort on lookups to virtual tables;
                               # every HR virtual table carries the mshr_ prefix (cdm_company is native).
                               "targetIsVirtual": lk["target"].startswith("mshr_")}
            else:
                q["lookup"] = None
            if (e["logicalName"], p["name"]) in samples:
                q["samples"] = samples[(e["logicalName"], p["name"])]
            if (e["logicalName"], p["name"]) in MAX_LENGTH:
                q["maxLength"] = MAX_LENGTH[(e["logicalName"], p["name"])]
            if (e["logicalName"], p["name"]) in ALTERNATIVE_NAMES:
                q["alternativeNames"] = ALTERNATIVE_NAMES[(e["logicalName"], p["name"])]
            props.append(q)
        relations = []
        for r in e["graphql"]["relations"]:
            target = by_logical[r["target"]]
            child = e if r["lookupOn"] == "this" else target
            lookup_prop = next(p for p in child["properties"] if p["name"] == r["lookupProperty"])
            attr = lookup_prop["lookup"]["lookupAttributeLogicalName"]  # mshr_fk_person_id
            middle = attr[len("mshr_fk_"):-len("_id")]
            rel = RELATION[middle]
            if r["lookupOn"] == "this":
                nav = f"mshr_FK_{rel}_id"
            else:
                nav = f"mshr_FK_{FNO[target['logicalName']]}_{rel}"
            readable = next((x for x in src["relationships"]
                             if x["child"] == child["logicalName"] and x["lookupProperty"] == r["lookupProperty"]), None)
            child_key = readable["childReadableKey"] if readable else None
            parent_key = PARENT_KEY.get((child["logicalName"], child_key), child_key)
            relations.append({
                "field": r["field"], "target": r["target"], "targetType": r["targetType"],
                "kind": r["kind"], "lookupProperty": r["lookupProperty"], "lookupOn": r["lookupOn"],
                "navigationProperty": nav, "childReadableKey": child_key, "parentReadableKey": parent_key,
                "description": r.get("description"),
            })
        # documented navigation names must match the derived ones
        for doc in e.get("collectionNavigationProperties", []):
            assert any(x["navigationProperty"] == doc["name"] for x in relations), doc["name"]
        out_entities.append({
            "name": e["name"], "logicalName": e["logicalName"], "entitySet": e["entitySet"],
            "primaryKey": e["primaryKey"], "description": e["description"],
            "fnoEntity": FNO[e["logicalName"]],
            "graphql": {"type": e["graphql"]["type"], "singleField": e["graphql"]["singleField"],
                        "listField": e["graphql"]["listField"], "relations": relations},
            "primaryFieldParts": PRIMARY_FIELD.get(e["logicalName"], []),
            "primaryFieldProperty": "mshr_primaryfield" if e["logicalName"] in PRIMARY_FIELD else None,
            "companyProperty": "mshr_dataareaid" if any(p["name"] == "mshr_dataareaid" for p in e["properties"]) else None,
            "fullName": FULL_NAME.get(e["logicalName"]),
            "referenceData": e["logicalName"] in REFERENCE_DATA,
            "references": REFERENCES.get(e["logicalName"], []),
            "sequences": SEQUENCES.get(e["logicalName"], {}),
            "properties": props,
        })
    out_sets = [{"name": o["name"], "displayName": o["displayName"], "graphqlEnum": o["graphqlEnum"],
                 "values": [{k: v.get(k) for k in ("value", "label", "description", "graphqlValue")} for v in o["values"]]}
                for o in src["optionSets"]]
    json.dump({"source": "Generated by tools/build-model.py from the transcribed Microsoft Docs model (entities.json).",
               "entities": out_entities, "optionSets": out_sets}, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
